#!/usr/bin/env python3
"""Trains an iris classifier, deterministically, and writes it as DIR/model.joblib (joblib.dump,
uncompressed: a plain pickle, which the downloader detects as `sklearn`), for the MLServer tests
and the demo. Run it with the venv of hack/runtime/sklearn-venv.sh (the image's scikit-learn):

    py=$(hack/runtime/sklearn-venv.sh | tail -1)
    $py hack/runtime/train_iris.py --out DIR [--variant a|b]
    $py hack/runtime/train_iris.py --out DIR --broken

Variant a: LogisticRegression on the four features; variant b: a decision tree of depth 1 (it
never answers class 2), so the two answer differently on the sample rows and a test can tell
which model served. --broken writes a model.joblib that looks like a scikit-learn pickle (its
first global is `sklearn.no_such_module.Model`) but that joblib cannot load.

Prints one JSON line: {"request": the V2 (Open Inference Protocol) infer request for 6 sample
rows, "predictions": the class labels the model gives them (what MLServer's `predict` output
carries as INT64 data), "datatype": "INT64", "sha256": of model.joblib, "variant": ...}; with
--broken, predictions is null.
"""
import argparse
import hashlib
import json
import os

# Two rows of each class of the iris data set (setosa, versicolor, virginica).
SAMPLE_ROWS = [0, 1, 50, 51, 100, 101]


def broken_pickle() -> bytes:
    """A protocol-4 pickle of `sklearn.no_such_module.Model()`: made by hand, as pickle itself
    refuses to name a class it cannot import."""
    def short_unicode(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()
    body = (short_unicode("sklearn.no_such_module") + b"\x94" + short_unicode("Model") + b"\x94"
            + b"\x93\x94)\x81\x94.")  # STACK_GLOBAL, EMPTY_TUPLE, NEWOBJ, STOP
    return b"\x80\x04\x95" + len(body).to_bytes(8, "little") + body


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for model.joblib (made if missing)")
    p.add_argument("--variant", choices=["a", "b"], default="a")
    p.add_argument("--broken", action="store_true", help="write a pickle that cannot be loaded")
    args = p.parse_args()

    from sklearn.datasets import load_iris  # bundled with scikit-learn: no download

    iris = load_iris()
    rows = iris.data[SAMPLE_ROWS]
    request = {"inputs": [{
        "name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
        "data": [float(v) for v in rows.ravel()],
    }]}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.joblib")
    predictions = None
    if args.broken:
        with open(path, "wb") as f:
            f.write(broken_pickle())
    else:
        import joblib
        if args.variant == "a":
            from sklearn.linear_model import LogisticRegression
            model = LogisticRegression(max_iter=1000, random_state=0)
        else:
            from sklearn.tree import DecisionTreeClassifier
            model = DecisionTreeClassifier(max_depth=1, random_state=0)
        model.fit(iris.data, iris.target)
        joblib.dump(model, path)  # compress=0: a plain pickle
        predictions = [int(v) for v in model.predict(rows)]
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(json.dumps({
        "request": request, "predictions": predictions, "datatype": "INT64", "sha256": digest,
        "variant": "broken" if args.broken else args.variant,
    }))


if __name__ == "__main__":
    main()
