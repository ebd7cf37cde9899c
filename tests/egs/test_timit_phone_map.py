"""The TIMIT recipe's folding of the 61 phones of .PHN to the 39 classes phone error rates are
reported on (Lee and Hon, 1989): closures and pauses to sil, q deleted, allophones merged."""

from pathlib import Path

from cdsvae.eval.metrics.per import fold_units, read_unit_map

MAP = Path(__file__).resolve().parents[2] / "egs" / "timit" / "cdsvae1" / "local" / "phones.61-39.map"


def test_61_phones_fold_to_39_classes():
    mapping = read_unit_map(MAP)
    assert len(mapping) == 61
    assert mapping["q"] is None and [p for p, c in mapping.items() if c is None] == ["q"]
    classes = {c for c in mapping.values() if c is not None}
    assert len(classes) == 39
    assert classes - {"sil"} <= set(mapping)  # every class but sil is itself a TIMIT phone
    for group, cls in ((("aa", "ao"), "aa"), (("ah", "ax", "ax-h"), "ah"), (("er", "axr"), "er"),
                       (("hh", "hv"), "hh"), (("ih", "ix"), "ih"), (("l", "el"), "l"), (("m", "em"), "m"),
                       (("n", "en", "nx"), "n"), (("ng", "eng"), "ng"), (("sh", "zh"), "sh"), (("uw", "ux"), "uw"),
                       (("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "h#", "pau", "epi"), "sil")):
        assert {mapping[p] for p in group} == {cls}, group
    assert fold_units("h# sh iy hv ae dcl d q y ix h#".split(), mapping) == \
        "sil sh iy hh ae sil d y ih sil".split()
