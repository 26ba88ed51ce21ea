"""Figure helpers that decide what a reader can read."""
from kdcal.plots import size_tick_labels


def test_close_sizes_get_their_labels_on_a_lower_line():
    # the evidence ladder: resnet20/resnet8x2 and resnet8x4/resnet14x3 are 1.13x and 1.27x apart
    params = [77754, 174970, 272186, 308074, 466618, 1226442, 1563226]
    names = ["resnet8", "resnet14", "resnet20", "resnet8x2", "resnet32", "resnet8x4", "resnet14x3"]
    labels = size_tick_labels(params, names)
    assert labels[0] == "resnet8\n78k" and labels[2] == "resnet20\n272k"
    lowered = [i for i, label in enumerate(labels) if label.startswith("\n\n")]
    assert lowered == [3, 6]
    assert labels[3] == "\n\nresnet8x2\n308k"


def test_a_run_of_close_sizes_alternates_lines():
    labels = size_tick_labels([100, 120, 150, 180], ["a", "b", "c", "d"])
    assert [label.startswith("\n\n") for label in labels] == [False, True, False, True]
