"""Prompt defaults, replacements and plugin defaults (groundcot.prompts)."""
import pickle

import pytest

from groundcot import prompts


@pytest.fixture(autouse=True)
def clean():
    yield
    prompts.install({})
    prompts._PLUGINS.pop("zoomer_train", None)


def test_an_installed_replacement_is_rendered_and_the_default_kept():
    prompts.install({"judge": "Same? $question | $reference | $candidate"})
    assert prompts.render("judge", question="q", reference="r", candidate="c") == "Same? q | r | c"
    assert prompts.default("judge").startswith("You check answers")
    prompts.install({})  # a job without replacements: the defaults again
    assert prompts.render("judge", question="q", reference="r", candidate="c").startswith("You check answers")


def test_install_refuses_a_bad_replacement_and_keeps_what_was_there():
    prompts.install({"sif_train": "$question Briefly."})
    with pytest.raises(ValueError, match=r"prompts.sif_train: unknown placeholder \$answer"):
        prompts.install({"sif_train": "$question $answer"})
    assert prompts.load("sif_train") == "$question Briefly."


def test_a_plugin_default_is_listed_checked_and_hashed():
    prompts.register_default("zoomer_train", "$question Zoom first.\n", "zoomer rows: the training question")
    assert "zoomer_train" in prompts.names() and prompts.placeholders("zoomer_train") == {"question"}
    assert prompts.describe("zoomer_train") == "zoomer rows: the training question"
    assert prompts.check("zoomer_train", "Zoom.") == ("prompts.zoomer_train: placeholder $question is missing "
                                                      "(the default uses $question)")
    assert prompts.hashes({"zoomer_train": "$question Zoom."})["zoomer_train"] != prompts.hashes()["zoomer_train"]
    with pytest.raises(ValueError, match="one of groundcot's own"):
        prompts.register_default("judge", "$question")


def test_using_installs_the_texts_where_it_is_called():
    wrapped = pickle.loads(pickle.dumps(prompts.Using({"sif_train": "$question Now."}, prompts.render)))
    assert wrapped("sif_train", question="Why?") == "Why? Now."  # as on a Beam worker, after unpickling
