"""Package `phm`: the PHM platform library (libs/phm) and its jobs (jobs/)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "libs/phm/__init__.py").read_text()).group(1)

# Versions checked to resolve and run together on Python 3.11.
# delta-spark is 4.4.0, not 4.4.1: the 4.4.1 JVM jars for Spark 4.2
# (io.delta:delta-spark_4.2_2.13) are not on Maven Central, and the Python
# package must match the jars it drives.
INSTALL_REQUIRES = [
    "pyspark==4.2.0",
    "delta-spark==4.4.0",
    "splink==5.0.0",
    "mlflow>=3.17,<4",
    "great-expectations>=1.24,<2",
    "pyyaml>=6,<7",
    "pydantic>=2.7,<3",
    "pandas>=2.2,<3",  # PySpark 4.2 does not fully support pandas 3
    "pyarrow>=15",
    "numpy>=1.26,<3",
    "python-dateutil>=2.8",
    # The synthetic ICS draws names from Faker's locale lists (data only; sampling is seeded numpy).
    "faker>=30,<41",
    # Risk models: LightGBM and a scikit-learn baseline, an optuna search, figures; skops is MLflow's safe
    # (non-pickle) format for scikit-learn models.
    "lightgbm>=4.5,<5",
    "scikit-learn>=1.5,<2",
    "optuna>=4,<6",
    "matplotlib>=3.8,<4",
    "skops>=0.10",
    # Impactability: T-, X- and DR-learners of uplift (econml's meta-learners over LightGBM).
    "econml>=0.16,<0.18",
]

EXTRAS_REQUIRE = {
    # wheel: the cluster test packages the library; playwright drives Debian's Chromium in the report's browser
    # test; nbclient runs notebooks/ top to bottom in an ipykernel
    "test": [
        "pytest>=8",
        "chispa>=0.10",
        "wheel>=0.42",
        "playwright>=1.50",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
    # zstandard: bench/eventlog.py reads Spark's event logs, which Spark 4 compresses with zstd
    "dev": ["ruff>=0.6", "build>=1", "nbstripout>=0.7", "zstandard>=0.23"],
}

setup(
    name="phm",
    version=VERSION,
    description="Population Health Management platform for NHS Integrated Care Systems on Spark and Delta Lake",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    package_dir={"phm": "libs/phm", "phm_jobs": "jobs"},
    packages=[*find_packages("libs"), "phm_jobs"],
    package_data={"phm": ["py.typed"], "phm.runtime": ["log4j2.properties", "jars/*.jar"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["phm = phm.cli:main"]},
)
