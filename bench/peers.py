"""The peers of the `tables` benchmark, each run as its own process the way a user's script would run:
import, read the train file with pandas, fit with the library's defaults, then predict the test file.

    python -m bench.peers {lightgbm,histgb,mlp} TRAIN TEST TARGET TASK OUT [--sep ';'] [--decimal ',']

What each gets (the usual minimal preprocessing a user writes, nothing tuned):
- all three: `pandas.read_csv` with the file's separator and decimal mark (its user knows them), every
  column but the target as a feature (identifiers and dates included, as in our default run); the
  scikit-learn models get `random_state=0` (not a tuning: their default draws a new seed each run);
- `lightgbm`: `LGBMClassifier()` / `LGBMRegressor()` (verbose=-1 only silences it); text columns as
  pandas `category` (the test file's mapped onto the training categories), missing values as NaN;
- `histgb`: `HistGradientBoostingClassifier()` / `...Regressor()`, text columns as `category` the same
  way, except those with more than 255 training values (it refuses them as categorical): their category
  codes as numbers;
- `mlp`: `MLPClassifier()` / `MLPRegressor()` behind a ColumnTransformer: numbers mean-imputed and
  standardized, text one-hot encoded (`handle_unknown="ignore"`, a missing value is its own category);
  the regressor's target is standardized too (`TransformedTargetRegressor`), as our tool does.

After `fit` returns, the process prints `fit_done <time.time()>`, so the caller times import + read + fit
from outside (the process's start to that moment); the prediction after it is not counted. OUT gets
`label` and one `p_<class>` per class (classifiers) or `prediction` (regression).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

MAX_HISTGB_CATEGORIES = 255
SEED = 0  # scikit-learn's default is a fresh draw per run; LightGBM's defaults are seeded already


def text_columns(frame, target: str) -> list[str]:
    return [c for c in frame.columns if c != target and frame[c].dtype.kind not in "biufc"]


def as_categories(train, test, columns):
    """Text columns as pandas categories; the test file's values mapped onto the training categories."""
    import pandas as pd

    for c in columns:
        train[c] = train[c].astype("category")
        known = train[c].cat.categories
        test[c] = pd.Categorical(test[c].where(test[c].isin(known)), categories=known)  # unseen: missing


def tree_model(tool: str, task: str, train, test, target: str):
    text = text_columns(train, target)
    as_categories(train, test, text)
    if tool == "lightgbm":
        import lightgbm

        return (lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier)(verbose=-1)
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    for c in text:
        if len(train[c].cat.categories) > MAX_HISTGB_CATEGORIES:
            for frame in (train, test):  # codes as numbers; -1 (missing or unseen) as missing
                frame[c] = frame[c].cat.codes.astype("float64").where(frame[c].notna())
    model = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return model(random_state=SEED)


def mlp_model(task: str, train, target: str):
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    text = text_columns(train, target)
    numeric = [c for c in train.columns if c != target and c not in text]
    for c in text:  # one type per column for the encoder (a text column can hold stray numbers)
        train[c] = train[c].astype(object).where(train[c].isna(), train[c].astype(str))
    features = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            ("text", OneHotEncoder(handle_unknown="ignore"), text),
        ]
    )
    if task == "regression":
        regressor = make_pipeline(features, MLPRegressor(random_state=SEED))
        return TransformedTargetRegressor(regressor, transformer=StandardScaler())
    return make_pipeline(features, MLPClassifier(random_state=SEED))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("tool", choices=("lightgbm", "histgb", "mlp"))
    for name in ("train", "test", "target", "task", "out"):
        parser.add_argument(name)
    parser.add_argument("--sep", default=",")
    parser.add_argument("--decimal", default=".")
    args = parser.parse_args(argv)
    import pandas as pd

    read = {"sep": args.sep, "decimal": args.decimal}
    train = pd.read_csv(args.train, **read)
    test = pd.read_csv(args.test, **read)
    if args.tool == "mlp":
        model = mlp_model(args.task, train, args.target)
        for c in text_columns(test, args.target):
            test[c] = test[c].astype(object).where(test[c].isna(), test[c].astype(str))
    else:
        model = tree_model(args.tool, args.task, train, test, args.target)
    x_train, y_train = train.drop(columns=[args.target]), train[args.target]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the defaults are the point
        model.fit(x_train, y_train)
    print(f"fit_done {time.time()!r}", flush=True)
    x_test = test[x_train.columns]
    if args.task == "regression":
        out = pd.DataFrame({"prediction": model.predict(x_test)})
    else:
        probabilities = model.predict_proba(x_test)
        classes = list(model.classes_)
        out = pd.DataFrame({"label": [classes[k] for k in probabilities.argmax(1)]})
        for k, name in enumerate(classes):
            out[f"p_{name}"] = probabilities[:, k]
    out.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
