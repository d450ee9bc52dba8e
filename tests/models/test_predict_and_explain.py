"""The service's model step (``ChurnModel.predict_and_explain``) gives what the ordinary path gives."""

import numpy as np
import pandas as pd

from models.registry import load_registered


def test_predict_and_explain_equals_predict_proba_and_explain(trained):
    model = load_registered(trained).model
    X = pd.read_parquet(trained.feature_table).sample(300, random_state=1).reset_index(drop=True)
    proba, expl = model.predict_and_explain(X[model.features].to_numpy(dtype="float64"))
    ref = model.explain(X)
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(expl.contributions, ref.contributions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(expl.base_values, ref.base_values, rtol=0, atol=1e-9)
    assert expl.features == ref.features
    one_p, one_e = model.predict_and_explain(X[model.features].to_numpy(dtype="float64")[0])
    assert one_p.shape == (1,) and one_e.contributions.shape == (1, len(model.features))
