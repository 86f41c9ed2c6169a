"""Generated datasets the template has never seen (scikit-learn's make_classification /
make_regression) with the columns real files have: an id, categories, integer-valued floats
written as `59.0`, and missing values."""

from __future__ import annotations

from pathlib import Path


def classification_csv(path: Path, rows: int = 600, features: int = 25) -> Path:
    """31 columns: `customer_id`, 25 numeric features, `region`, `plan`, `age` (59.0), `income`
    (10% missing) and the string label `churn` (yes/no)."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=features, n_informative=8, n_redundant=4,
                               class_sep=1.2, random_state=7)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(x.round(4), columns=[f"f{i:02d}" for i in range(features)])
    frame.insert(0, "customer_id", [f"C{i:05d}" for i in range(rows)])
    frame["region"] = rng.choice(["north", "south", "east", "west"], rows)
    frame["plan"] = rng.choice(["basic", "plus", "pro"], rows)
    frame["age"] = rng.integers(18, 90, rows).astype(float)  # written as 59.0: an int column
    income = rng.normal(50_000, 12_000, rows).round(2)
    income[rng.random(rows) < 0.1] = np.nan
    frame["income"] = income
    frame["churn"] = np.where(y == 1, "yes", "no")
    frame.to_csv(path, index=False)
    return path


def regression_csv(path: Path, rows: int = 500) -> Path:
    """`house_id`, 8 numeric features, `city` (category), `rooms` (3.0), `lot` (15% missing), `price`."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=rows, n_features=8, n_informative=6, noise=5.0, random_state=3)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(x.round(4), columns=[f"x{i}" for i in range(8)])
    frame.insert(0, "house_id", np.arange(1000, 1000 + rows))
    frame["city"] = rng.choice(["lyon", "nantes", "lille"], rows)
    frame["rooms"] = rng.integers(1, 8, rows).astype(float)
    lot = rng.uniform(100, 900, rows).round(1)
    lot[rng.random(rows) < 0.15] = np.nan
    frame["lot"] = lot
    frame["price"] = (y + 300 + 20 * frame["rooms"]).round(2)
    frame.to_csv(path, index=False)
    return path
