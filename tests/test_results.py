"""Results tables: one CSV per experiment and profile, read back as written."""
import uexlib as ue


def test_read_results_returns_what_write_results_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("UEX_RESULTS_DIR", str(tmp_path))
    assert list(ue.results.read_results("tiny", "smoke").columns) == list(ue.results.SCHEMA)
    assert ue.results.read_results("tiny", "smoke").empty
    row = ue.result_row(experiment="tiny", paper="none", table="", dataset="cifar10", data_source="synthetic",
                        model="cnn@0.25", attack="em", attack_params={"eps": 8 / 255}, defense="none",
                        defense_params={}, poison_ratio=1.0, metric="test_acc", value=12.5, paper_value=None,
                        profile="smoke", seed=0, wall_s=1.0)
    ue.write_results([row], "tiny", "smoke")
    back = ue.results.read_results("tiny", "smoke")
    assert len(back) == 1 and back.value.iloc[0] == 12.5 and back.attack.iloc[0] == "em"
    assert ue.results.read_results("tiny", "lab").empty
