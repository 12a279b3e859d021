# Root conftest: makes the repository root importable for tests (models, utils, genotypes, scripts).
