"""Prediction, split by job: `api` (which model; one subject to its lesion rows; what
`rimscope.predict` calls), `outputs` (the files written and their column names, defined once),
`batch` (many subjects with stamps, shards and a run record), `cli` (`rimscope predict`),
`rims` (the rim mask and rim columns of one subject) and `report` (the per-subject HTML report).

The package is `inference`, not `predict`: a submodule named `predict` would shadow the
package-level function `rimscope.predict` as soon as it was imported.
"""
