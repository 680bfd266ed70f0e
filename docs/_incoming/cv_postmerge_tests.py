

def test_compare_takes_two_cv_folders_at_their_fold_decisions_and_refuses_a_single_split(cv_run, tmp_path):
  from mammo_train.evaluation import comparison_report, scored  # pylint: disable=import-outside-toplevel
  workdir, metrics = cv_run
  twin = tmp_path / "twin"
  shutil.copytree(workdir / "cv", twin / "cv")
  result = comparison_report.compare_folders([workdir, twin], tmp_path / "compared", n_bootstrap=20)
  assert result["dataset"]["cross_validated"]
  for model in result["models"].values():  # decided per fold, as cv/report.md decided
    for level in ("image", "breast", "patient"):
      assert model["levels"][level]["sensitivity"] == pytest.approx(metrics["levels"][level]["sensitivity"])
  with pytest.raises(scored.NotComparableError, match="different split|cross-validated"):
    comparison_report.compare_folders([workdir, workdir / "fold_0"], tmp_path / "refused", n_bootstrap=20)


def test_the_report_carries_the_reporting_checklist(cv_run):
  workdir, _ = cv_run
  report = (workdir / "cv" / "report.md").read_text()
  assert report.index("## Folds") < report.index("## Reporting checklist")
  assert json.loads((workdir / "cv" / "checklist.json").read_text())["leakage"]["passed"]
