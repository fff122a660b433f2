"""Building MedVidBench-format training data from the source datasets' expert annotations (docs/curation.md).

schema.py is the common form every converter in sources/ produces; the stages after it read only that.
"""
