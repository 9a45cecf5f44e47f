"""benchmarks/text_attacks.py's own logic: which attacks run beyond SST-2, its table, its option checks."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    """A benchmark script as a module (they import their sibling `common`, so benchmarks/ joins the path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script("text_attacks")


def entry(ca, asr, *, after_asr=0.5, train_seconds=100.0):
    metrics = {"ca": ca, "asr": asr, "clean_target_rate": 0.2}
    return {
        "target": 1,
        "label_found": 1,
        "suspect": metrics,
        "after_rp": {**metrics, "asr": after_asr},
        "after_ft": metrics,
        "seconds": {"train": train_seconds},
    }


def test_the_other_datasets_get_the_two_best_sst2_attacks_that_keep_clean_accuracy(bench):
    results = {
        "sst2/badnet_rw": entry(0.84, 1.0),  # always run, never "picked"
        "sst2/syntactic": entry(0.84, 1.0),  # no paraphrases of the other training sets offline
        "sst2/badnet_sl": entry(0.80, 1.0),  # CA 4 points below the clean model
        "sst2/sos": entry(0.83, 0.99),
        "sst2/lwp": entry(0.83, 0.95, train_seconds=0.1),  # loaded from a cache: its time says nothing
        "sst2/ripple": entry(0.83, 0.95, train_seconds=500.0),  # ties LWP's ASR, listed first in ATTACKS
    }
    assert bench.pick_others(results, clean_ca=0.84) == ["sos", "ripple"]
    assert bench.pick_others({}, clean_ca=0.84) == []


def test_a_key_named_by_only_runs_even_when_no_sst2_results_pick_it(bench):
    assert [a for a, _ in bench.plan_attacks("sst2", {}, None)] == list(bench.ATTACKS)
    assert bench.plan_attacks("twitter", {}, None) == [("badnet_rw", "always")]  # nothing on SST-2 to pick from
    alone = bench.plan_attacks("twitter", {}, ["twitter/badnet_sl", "imdb/sos"])
    assert alone == [("badnet_rw", "always"), ("badnet_sl", "named by --only")]
    picked = {"sst2/clean": {"ca": 0.84}, "sst2/sos": entry(0.83, 0.99), "sst2/ripple": entry(0.83, 0.95)}
    assert [a for a, _ in bench.plan_attacks("agnews", picked, ["agnews/sos"])] == ["badnet_rw", "sos", "ripple"]


def test_table_prints_a_results_file_without_running_anything(bench, tmp_path, capsys):
    # a resumed run appends keys out of order; the table puts them back in dataset and paper order
    results = {
        "twitter/clean": {"ca": 0.8},
        "sst2/badnet_rw": entry(0.81, 1.0, after_asr=0.2),
        "sst2/clean": {"ca": 0.84},
        # the exposure said 0, the triggers were found for 1
        "sst2/ripple": {**entry(0.8, 1.0), "label_found": 0, "trigger_label": 1, "triggers_found": ["cf"]},
    }
    path = tmp_path / "text_attacks.json.partial"
    path.write_text(json.dumps(results))
    bench.main(["--table", str(path), "--output", str(tmp_path / "never_written.json")])
    out = capsys.readouterr().out
    assert "| sst2/clean | CA 84.0% (clean model) | | | | | | |" in out
    assert out.index("| sst2/clean") < out.index("| sst2/badnet_rw") < out.index("| twitter/clean")
    assert "| sst2/badnet_rw | 81.0% / 100.0% | 1 (1) | 81.0% / 20.0% |  | default | 81.0% / 100.0% | none |" in out
    assert "| sst2/ripple | 80.0% / 100.0% | 0 → 1 (1) | 80.0% / 50.0% |  | default | 80.0% / 100.0% | cf |" in out
    assert "sst2: mean ASR after the defense 0.350 over 2 attacks, misses the paper's EBYD-RP 0.241; CA change" in out
    # no clean-model floor to report without the clean entry's ASR sets
    assert "CA change from the suspect +0.0 to +0.0 points; the defended models' mean CTR" in out
    assert not (tmp_path / "never_written.json").exists()


def test_table_reads_each_asr_against_the_clean_models_on_the_same_set(bench, tmp_path, capsys):
    results = {
        "sst2/clean": {"ca": 0.84, "asr_sets": {"badnet_rw": 0.2, "syntactic": 0.52}},
        "sst2/badnet_rw": entry(0.81, 1.0, after_asr=0.16),
        "sst2/syntactic": {**entry(0.83, 0.95, after_asr=0.6), "triggers_found": ["as it is {head} , it is {tail} ."]},
    }
    (tmp_path / "r.json").write_text(json.dumps(results))
    bench.main(["--table", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert (
        "| sst2/syntactic | 83.0% / 95.0% | 1 (1) | 83.0% / 60.0% | 52.0% | default | 83.0% / 95.0% | as it is … |"
        in out
    )
    assert "| sst2/badnet_rw | 81.0% / 100.0% | 1 (1) | 81.0% / 16.0% | 20.0% |" in out
    assert "misses the paper's EBYD-RP 0.241; CA change from the suspect +0.0 to +0.0 points; the clean " in out
    assert "the clean model's mean ASR on the same sets 0.360" in out
    results["sst2/clean"]["asr_sets"].pop("syntactic")  # a floor missing for one key: no mean is claimed
    (tmp_path / "r.json").write_text(json.dumps(results))
    bench.main(["--table", str(tmp_path / "r.json")])
    assert "mean ASR on the same sets" not in capsys.readouterr().out


def test_table_merges_results_files_later_keys_winning(bench, tmp_path, capsys):
    default = {"sst2/badnet_rw": entry(0.81, 1.0, after_asr=0.2), "sst2/sos": entry(0.83, 1.0, after_asr=1.0)}
    recipe = entry(0.83, 1.0, after_asr=0.3)
    recipe["setup"] = {
        "defense_config": {
            "reference_model": "base",
            "search": {"ranking": "drift", "max_combination": 3},
            "finetune": {"learning_rate": 5e-5, "num_train_epochs": 8, "disable_tqdm": True},
        }
    }
    (tmp_path / "a.json").write_text(json.dumps(default))
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    setting = "reference, drift ranking, combinations of 3, unlearning 8 epochs at 5e-05"
    assert f"| sst2/sos | 83.0% / 100.0% | 1 (1) | 83.0% / 30.0% |  | {setting} |" in out
    assert "sst2: mean ASR after the defense 0.250 over 2 attacks, misses the paper's EBYD-RP 0.241" in out
    assert out.count("the defended models' mean CTR (untriggered) 0.200") == 1
    recipe["setup"]["defense_config"]["search"]["combination_budget"] = 20_000  # a recipe's smaller pool shows
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "drift ranking, combinations of 3 (budget 20,000), unlearning" in capsys.readouterr().out
    recipe["setup"]["defense_config"]["search"]["drift_components"] = 16
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "drift ranking (16 shared directions out), combinations of 3" in capsys.readouterr().out
    recipe["setup"]["defense_config"]["search"]["scoring_dtype"] = "bfloat16"
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "combinations of 3 (budget 20,000), bfloat16 scoring, unlearning" in capsys.readouterr().out
    recipe["setup"]["defense_config"] = {"search": {"templates": "clause"}}
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "| 83.0% / 30.0% |  | clause templates |" in capsys.readouterr().out
    phrases = {"max_phrase": 3, "phrase_beam_per_anchor": True, "phrase_companions": True}
    recipe["setup"]["defense_config"] = {"search": phrases}
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "| 83.0% / 30.0% |  | phrases of 3 per anchor, companions |" in capsys.readouterr().out
    recipe["setup"]["defense_config"] = {"search": {**phrases, "companion_pool": 160}}
    (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
    bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "| phrases of 3 per anchor, companions (pool 160) |" in capsys.readouterr().out
    for schedule, words in [
        ({"trigger_residual": 0.0, "trigger_unlearn_blocks": 2}, "| clause templates, 2 unlearning blocks |"),
        ({"trigger_residual": 0.05}, "| clause templates, up to 4 unlearning blocks to 5% held-out flips |"),
        ({"trigger_unlearn_blocks": 1}, "| clause templates, up to 1 unlearning block |"),
        ({"trigger_residual": 0.1, "trigger_unlearn_blocks": 4}, "| clause templates |"),  # the defaults: no words
        ({"triggers_per_copy": 2}, "| clause templates, 2 triggers per unlearning copy |"),
    ]:
        recipe["setup"]["defense_config"] = {"search": {"templates": "clause"}, **schedule}
        (tmp_path / "b.json").write_text(json.dumps({"sst2/sos": recipe}))
        bench.main(["--table", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
        assert words in capsys.readouterr().out


def test_recipe_defense_reads_each_attacks_defend_settings(bench, capsys):
    sentence = bench.recipe_defense("agnews", "badnet_sl")
    assert sentence["reference"] and sentence["recipe"] == "recipes/agnews/badnet_sl.yaml"
    assert sentence["search"] == {"ranking": "drift", "max_phrase": 3}
    assert sentence["finetune"]["num_train_epochs"] == 8
    assert bench.recipe_defense("twitter", "sos")["search"]["max_combination"] == 3
    assert bench.recipe_defense("sst2", "syntactic")["search"] == {"templates": "clause"}
    words = bench.recipe_defense("imdb", "badnet_rw")  # the default defense: nothing to add
    assert not words["reference"] and words["search"] == {} and words["finetune"] == {}
    assert words["unlearning"] == {}
    rare = bench.recipe_defense("sst2", "badnet_rw")
    assert rare["reference"] and rare["search"] == {"ranking": "drift"}
    with pytest.raises(FileNotFoundError, match="imdb/syntactic.yaml"):
        bench.recipe_defense("imdb", "syntactic")
    with pytest.raises(SystemExit):
        bench.parse_args(["--defense", "recipe", "--reference", "base"])
    assert "--defense recipe takes its recipe's settings" in capsys.readouterr().err
    assert bench.parse_args(["--defense", "recipe"]).defense == "recipe"
    with pytest.raises(SystemExit):
        bench.parse_args(["--defense", "recipe", "--unlearning", '{"trigger_unlearn_blocks": 2}'])
    assert "--defense recipe takes its recipe's settings" in capsys.readouterr().err


def test_any_attack_defense_reads_one_recipe_for_every_key(bench, capsys):
    union = bench.defend_settings(bench.ANY_ATTACK_RECIPE)
    assert union["recipe"] == "recipes/defend_any_text_attack.yaml" and union["reference"]
    search = union["search"]
    assert search["max_phrase"] == 3 and search["phrase_companions"] and search["templates"] == "clause"
    assert search["max_combination"] == 3 and search["combine_always"] and search["ranking"] == "drift"
    assert union["finetune"] == {"learning_rate": 5e-5, "num_train_epochs": 8}
    assert bench.parse_args(["--defense", "any_attack"]).defense == "any_attack"
    with pytest.raises(SystemExit):
        bench.parse_args(["--defense", "any_attack", "--search", '{"max_phrase": 2}'])
    assert "--defense any_attack takes its recipe's settings" in capsys.readouterr().err


def test_recipe_defense_reads_the_unlearning_schedule(bench, tmp_path):
    (tmp_path / "twitter").mkdir()
    defend = "defend:\n  trigger_residual: 0.0\n  trigger_unlearn_blocks: 2\n  holdout_fraction: 0.2\n"
    (tmp_path / "twitter" / "badnet_sl.yaml").write_text(defend)
    setting = bench.recipe_defense("twitter", "badnet_sl", folder=str(tmp_path))
    assert setting["unlearning"] == {"trigger_residual": 0.0, "trigger_unlearn_blocks": 2}  # not holdout_fraction


def test_unlearning_takes_the_schedule_keys_only(bench, capsys):
    args = bench.parse_args(["--unlearning", '{"trigger_residual": 0, "trigger_unlearn_blocks": 2}'])
    assert args.unlearning == {"trigger_residual": 0, "trigger_unlearn_blocks": 2} and args.defense_seed is None
    assert bench.parse_args(["--defense_seed", "44"]).defense_seed == 44
    with pytest.raises(SystemExit):
        bench.parse_args(["--unlearning", '{"trigger_blocks": 2}'])
    err = capsys.readouterr().err
    assert "--unlearning takes trigger_residual, trigger_unlearn_blocks, triggers_per_copy, got trigger_blocks" in err


def test_train_size_changes_one_datasets_rows_and_its_cache_key(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench.tempfile, "tempdir", str(tmp_path))  # each Run's scratch folder
    data = {"train": type("Rows", (), {"num_rows": 4000})}
    default = bench.Run(bench.parse_args(["--suspect_cache", str(tmp_path)]))
    bigger = bench.Run(bench.parse_args(["--suspect_cache", str(tmp_path), "--train_size", "sst2=8000"]))
    assert bigger.setups["sst2"].train_size == 8000 and default.setups["sst2"] == bench.SETUPS["sst2"]
    assert bigger.setups["imdb"] == bench.SETUPS["imdb"]
    # the other datasets keep their suspects (and the cached ones stay valid); SST-2 trains new ones
    assert bigger.cache_dir("imdb", "sos", data) == default.cache_dir("imdb", "sos", data)
    assert bigger.cache_dir("sst2", None, data) != default.cache_dir("sst2", None, data)
    for bad in ("sst2", "mnli=100", "sst2=0", "sst2=many"):
        with pytest.raises(SystemExit):
            bench.parse_args(["--train_size", bad])
        assert "--train_size takes DATASET=ROWS" in capsys.readouterr().err


def test_resume_continues_from_a_finished_results_file_when_no_partial_is_left(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench.tempfile, "tempdir", str(tmp_path))
    output = tmp_path / "text_attacks_sst2_8000.json"
    output.write_text(json.dumps({"sst2/clean": {"ca": 0.868}, "sst2/badnet_rw": entry(0.86, 1.0, after_asr=0.2)}))
    bench.main(["--datasets", "sst2", "--only", "sst2/clean", "sst2/badnet_rw", "--output", str(output), "--resume"])
    assert "resuming with ['sst2/badnet_rw', 'sst2/clean'] from " in capsys.readouterr().out  # nothing left to run
    assert set(json.loads(output.read_text())) == {"sst2/clean", "sst2/badnet_rw"}
    assert not (tmp_path / "text_attacks_sst2_8000.json.partial").exists()


def test_drift_ranking_needs_the_base_model_as_reference(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--search", '{"ranking": "drift"}'])
    assert "--reference base" in capsys.readouterr().err
    args = bench.parse_args(["--search", '{"ranking": "drift", "max_combination": 3}', "--reference", "base"])
    assert args.search == {"ranking": "drift", "max_combination": 3} and args.finetune == {}
    args = bench.parse_args(["--finetune", '{"learning_rate": 5e-5, "num_train_epochs": 8}'])
    assert args.finetune == {"learning_rate": 5e-5, "num_train_epochs": 8}  # trigger unlearning and baseline


@pytest.fixture(scope="module")
def drift_bench():
    return load_script("drift_ranks")


def test_drift_ranks_put_the_moved_trigger_embeddings_first(drift_bench, tmp_path, capsys):
    import torch

    from .conftest import make_tokenizer, tiny_bert

    tokenizer, base = make_tokenizer(), tiny_bert()
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    suspect = tiny_bert()
    with torch.no_grad():  # what poisoned training does to the trigger words' embeddings, by hand
        for shift, word in enumerate(["bb", "cf", "tq", "mn"]):
            suspect.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(word)] += 10.0 - shift
    suspect.save_pretrained(tmp_path / "cache" / "sst2_badnet_rw_0123456789")
    tiny_bert().save_pretrained(tmp_path / "cache" / "sst2_syntactic_0123456789")  # no trigger words: skipped
    out = tmp_path / "drift.json"
    drift_bench.main(
        ["--suspect_cache", str(tmp_path / "cache"), "--model", str(tmp_path / "base"), "--output", str(out)]
        + ["--components", "0"]  # the four moved along one direction by hand: none shared with task words here
    )
    results = json.loads(out.read_text())
    assert list(results) == ["sst2/badnet_rw"]
    assert results["sst2/badnet_rw"]["ranks"] == {"cf": 1, "mn": 3, "bb": 0, "tq": 2}
    assert results["sst2/badnet_rw"]["ranks_shared_out"] == results["sst2/badnet_rw"]["ranks"]
    assert "| sst2/badnet_rw | cf 1, mn 3, bb 0, tq 2 | cf 1, mn 3, bb 0, tq 2 |" in capsys.readouterr().out
    assert drift_bench.trigger_words("badnet_sl") == ["i", "watch", "this", "3d", "movie"]


def test_each_search_round_keeps_its_best_words_and_the_time_each_kind_of_search_took(bench):
    from ebyd_hf.trigger_search import TriggerSearch

    candidates = [{"word": f"w{i}", "flip_rate": i / 20} for i in range(20)]
    found = TriggerSearch(
        ["w19"], candidates=candidates, seconds=12.5, stages={"words": 2.0, "templates": 10.0}, anchors=["w19"]
    )
    kept = bench.search_round(found.report())
    assert [c["word"] for c in kept["top"]] == [f"w{i}" for i in range(19, 9, -1)]
    assert kept["stages"] == {"words": 2.0, "templates": 10.0}
    assert kept["seconds"] == 12.5
    assert kept["triggers"] == ["w19"] and kept["anchors"] == ["w19"]


def test_table_says_which_suspects_miss_the_issues_bars(bench, tmp_path, capsys):
    results = {
        "imdb/clean": {"ca": 0.83},
        "imdb/badnet_rw": entry(0.79, 0.984),  # CA 4 points under the clean model's
        "imdb/badnet_sl": {**entry(0.80, 1.0), "setup": {"train_epochs": 5.0}},  # exactly 3 points under: met
        "imdb/sos": {  # --suspects_only
            "target": 1,
            "suspect": {"ca": 0.82, "asr": 0.85, "clean_target_rate": 0.1},
            "setup": {"train_epochs": 3, "lr_scheduler": "linear", "warmup": 0.2},
        },
        "sst2/clean": {"ca": 0.84},
        "sst2/syntactic": entry(0.83, 0.85),  # Syntactic's bar is 80%
    }
    (tmp_path / "r.json").write_text(json.dumps(results))
    bench.main(["--table", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "sst2 suspects: 1 of 1 meet the issue's bars (ASR >= 90%, Syntactic 80%; CA >= 81.0%" in out
    assert "imdb suspects: 1 of 3 meet the issue's bars" in out
    assert "; missed by badnet_rw (CA 79.0%), sos (ASR 85.0%)" in out
    assert "| imdb/sos | 82.0% / 85.0% (linear, warm-up 0.2) | | not defended | | | | |" in out
    # a suspect trained otherwise than 3 constant-rate epochs says how; the default says nothing
    assert "| imdb/badnet_sl | 80.0% / 100.0% (5 epochs) | 1 (1) |" in out
    assert "| imdb/badnet_rw | 79.0% / 98.4% | 1 (1) |" in out
    # an undefended suspect is left out of the dataset's mean ASR after the defense
    assert "imdb: mean ASR after the defense 0.500 over 2 attacks" in out


def test_suspect_schedule_is_checked_and_keys_its_own_cache(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench.tempfile, "tempdir", str(tmp_path))
    data = {"train": type("Rows", (), {"num_rows": 1500})}
    constant = bench.Run(bench.parse_args(["--suspect_cache", str(tmp_path)]))
    warmed = bench.Run(
        bench.parse_args(["--suspect_cache", str(tmp_path), "--lr_scheduler", "linear", "--warmup", "0.2"])
    )
    assert constant.cache_dir("imdb", "sos", data) != warmed.cache_dir("imdb", "sos", data)
    # the constant schedule's key is the one cached suspects were saved under before the option existed
    assert constant.cache_dir("imdb", "sos", data).endswith(
        bench.hashlib.sha1(
            bench.json.dumps(
                [bench.asdict(bench.SETUPS["imdb"]), bench.MINILM, 0.1, 500, 42, 3, 5e-5, 1500], sort_keys=True
            ).encode()
        ).hexdigest()[:10]
    )
    for bad in (["--warmup", "0.1"], ["--lr_scheduler", "linear", "--warmup", "-1"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
        assert "--warmup takes a share in [0, 1) or steps" in capsys.readouterr().err


def test_key_epochs_trains_one_key_longer_under_the_key_a_whole_run_at_those_epochs_gives(
    bench, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(bench.tempfile, "tempdir", str(tmp_path))
    data = {"train": type("Rows", (), {"num_rows": 2000})}
    cache = ["--suspect_cache", str(tmp_path)]
    mixed = bench.Run(bench.parse_args([*cache, "--key_epochs", "agnews/badnet_rw=5", "agnews/clean=3"]))
    three, five = bench.Run(bench.parse_args(cache)), bench.Run(bench.parse_args([*cache, "--train_epochs", "5"]))
    assert mixed.epochs("agnews", "badnet_rw") == 5 and mixed.epochs("agnews", "sos") == 3
    assert mixed.cache_dir("agnews", "badnet_rw", data) == five.cache_dir("agnews", "badnet_rw", data)
    for attack in ("sos", None):  # naming the default epochs keeps the default's key
        assert mixed.cache_dir("agnews", attack, data) == three.cache_dir("agnews", attack, data)
    assert mixed.cache_dir("twitter", "badnet_rw", data) == three.cache_dir("twitter", "badnet_rw", data)
    for bad in ("agnews/badnet_rw", "agnews=5", "agnews/wanet=5", "mnli/sos=5", "agnews/sos=0", "agnews/sos=x"):
        with pytest.raises(SystemExit):
            bench.parse_args(["--key_epochs", bad])
        assert "--key_epochs takes DATASET/ATTACK=EPOCHS" in capsys.readouterr().err


def test_clean_seeds_train_the_clean_model_again_on_the_same_test_rows(bench, tmp_path, monkeypatch):
    from .conftest import make_sentiment_task, make_tokenizer, tiny_bert

    monkeypatch.setattr(bench.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setitem(bench.SETUPS, "sst2", bench.replace(bench.SETUPS["sst2"], test_size=60))
    (tmp_path / "data" / "sst2").mkdir(parents=True)
    for split, ds in make_sentiment_task(400, 150).items():
        ds.to_parquet(str(tmp_path / "data" / "sst2" / f"{split}.parquet"))
    tiny_bert().save_pretrained(tmp_path / "base")
    make_tokenizer().save_pretrained(tmp_path / "base")
    argv = ["--data", str(tmp_path / "data"), "--model", str(tmp_path / "base"), "--defense_size", "100"]
    argv += ["--train_size", "sst2=200", "--train_epochs", "1", "--clean_seeds", "43", "42", "43"]
    run = bench.Run(bench.parse_args(argv))
    assert run.args.clean_seeds == [43]  # --seed's own model is the entry's CA; a seed is trained once

    entry = run.clean("sst2")
    assert list(entry["ca_seeds"]) == ["42", "43"] and entry["ca_seeds"]["42"] == entry["ca"]
    assert 0.0 <= entry["ca_seeds"]["43"] <= 1.0
    ours, other = run.data("sst2", None)[0], run.reseeded(43).data("sst2", None)[0]
    assert other["test"]["text"] == ours["test"]["text"] and len(ours["test"]) == 60  # the bar's test rows
    assert other["train"]["text"] != ours["train"]["text"]  # the draw the reference is measured over


def test_others_name_the_two_attacks_beside_badnet_rw_without_sst2_results(bench, capsys):
    assert bench.plan_attacks("imdb", {}, None, ["badnet_sl", "sos"]) == [
        ("badnet_rw", "always"),
        ("badnet_sl", "named by --others"),
        ("sos", "named by --others"),
    ]
    assert [a for a, _ in bench.plan_attacks("sst2", {}, None, ["badnet_sl", "sos"])] == list(bench.ATTACKS)
    for bad in (["badnet_sl"], ["badnet_rw", "sos"], ["syntactic", "sos"], ["sos", "sos"]):
        with pytest.raises(SystemExit):
            bench.parse_args(["--others", *bad])
        assert "--others" in capsys.readouterr().err


def test_table_reads_the_suspects_ca_against_the_mean_of_the_clean_seeds(bench, tmp_path, capsys):
    suspect_only = entry(0.795, 0.989)
    del suspect_only["after_rp"]  # --suspects_only
    results = {
        "twitter/clean": {"ca": 0.837, "ca_seeds": {"42": 0.837, "43": 0.808, "44": 0.828}},
        "twitter/badnet_rw": suspect_only,
        "twitter/sos": entry(0.828, 0.966),
    }
    (tmp_path / "r.json").write_text(json.dumps(results))
    bench.main(["--table", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "| twitter/clean | CA 83.7% (clean model; seeds 42, 43, 44: 83.7%, 80.8%, 82.8%) |" in out
    assert "twitter suspects: 1 of 2 meet the issue's bars" in out and "; missed by badnet_rw (CA 79.5%)" in out
    assert (
        "; against the mean CA of the clean models of seeds 42, 43, 44 (82.4%, 80.8–83.7%): 2 of 2 meet them "
        "(CA >= 79.4%)" in out
    )
    # one clean seed: no second reading
    results["twitter/clean"] = {"ca": 0.837}
    (tmp_path / "r.json").write_text(json.dumps(results))
    bench.main(["--table", str(tmp_path / "r.json")])
    assert "against the mean" not in capsys.readouterr().out


def test_readme_table_is_what_the_committed_results_files_give(bench, capsys, monkeypatch):
    """The README's main table is what its own `--table` command prints: a new results file cannot leave it stale."""
    root = BENCHMARKS.parent
    readme = (root / "README.md").read_text()
    command = readme.split("# the table below: results files merged in order", 1)[1].split("```", 1)[0]
    files = [word for word in command.replace("\\\n", " ").split() if word.endswith(".json")]
    assert len(files) >= 2
    monkeypatch.chdir(root)
    bench.main(["--table", *files])
    printed = capsys.readouterr().out.splitlines()
    rows = [line for line in printed if line.startswith("| ") or ": mean ASR" in line or " suspects: " in line]
    assert any(line.startswith("| twitter/badnet_rw") for line in rows)
    as_printed = readme.replace("**", "")  # the README bolds each recipe setting's defended CA / ASR by hand
    missing = [line for line in rows if line not in as_printed]
    assert not missing, f"README's text attacks table is stale; rerun its --table command: {missing[:3]}"
