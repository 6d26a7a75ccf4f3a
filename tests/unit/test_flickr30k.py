import shutil

from groundcot.transforms.sources.flickr30k import parse_annotation, parse_sentences, records_for_image

from support import FIXTURES

SRC = FIXTURES / "flickr30k_entities"


def tree(tmp_path, xml=None):
    (tmp_path / "Sentences").mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    shutil.copy(SRC / "1000092795.txt", tmp_path / "Sentences" / "1000092795.txt")
    xml_text = xml if xml is not None else (SRC / "1000092795.partial.xml").read_text()
    (tmp_path / "Annotations" / "1000092795.xml").write_text(xml_text)
    return str(tmp_path)


def test_chain_with_two_boxes_in_zero_based_pixels():
    width, height, chains = parse_annotation((SRC / "1000092795.partial.xml").read_text())
    assert (width, height) == (333, 500)
    assert chains["1"] == [[158, 124, 218, 334], [196, 109, 260, 372]]  # 1-based in the file
    assert chains["6"] == [[196, 109, 260, 372]]  # one box, two chains
    assert chains["10"] == []  # scene / nobndbox


def test_sentences_parse_phrases_and_plain_text():
    phrases = parse_sentences((SRC / "1000092795.txt").read_text())
    assert phrases[0].chain == "1" and phrases[0].text == "Two young guys" and phrases[0].types == ["people"]
    assert phrases[0].sentence.startswith("Two young guys with shaggy hair look at")
    assert len({p.sentence_index for p in phrases}) == 5


def test_records_one_per_chain(tmp_path):
    records = records_for_image("1000092795\n", tree(tmp_path), "train")
    by_chain = {r.source_id.split("#")[1]: r for r in records}
    first = by_chain["1"]
    assert first.rejection is None
    assert first.gt_boxes == [[158, 124, 218, 334], [196, 109, 260, 372]]
    assert first.answer == "Two young guys" and '"Two young guys"' in first.question
    assert (first.width, first.height, first.image_path, first.split) == (333, 500, "1000092795.jpg", "train")
    assert by_chain["6"].gt_boxes == [[196, 109, 260, 372]]
    assert by_chain["10"].rejection.reason == "phrase_not_boxed"  # "time": other/nobndbox
    assert by_chain["8"].rejection.reason == "phrase_not_boxed"  # not in the (partial) xml
    assert len(records) == len({p.chain for p in parse_sentences((SRC / "1000092795.txt").read_text())})


def test_all_mentions(tmp_path):
    records = records_for_image("1000092795", tree(tmp_path), "val", all_mentions=True)
    chain1 = [r for r in records if r.source_id.split("#")[1] == "1"]
    assert [r.answer for r in chain1] == ["Two young guys", "Two young , White males", "Two men", "Two friends"]
    assert len({r.id for r in records}) == len(records)


def test_missing_and_broken_annotations(tmp_path):
    missing = records_for_image("123", str(tmp_path), "train")
    assert len(missing) == 1 and missing[0].rejection.reason == "missing_annotation"
    broken = records_for_image("1000092795", tree(tmp_path / "b", xml="<annotation><size>"), "train")
    assert broken[0].rejection.reason == "bad_annotation"


def test_bad_bytes_a_bom_and_escaping_ids(tmp_path):
    root = tree(tmp_path)
    sentences = tmp_path / "Sentences" / "1000092795.txt"
    sentences.write_bytes(b"\xef\xbb\xbf" + sentences.read_bytes())
    records = records_for_image(b"\xef\xbb\xbf1000092795\n", root, "val")
    assert records and not records[0].question.startswith("\ufeff")
    assert records[0].rejection is None or records[0].rejection.reason == "phrase_not_boxed"
    bad = records_for_image(b"10\xff\n", root, "val", where="val.txt@11")
    assert [(r.rejection.reason, r.source_id) for r in bad] == [("bad_encoding", "val.txt@11")]
    for image_id in ("../../etc/passwd", "/etc/passwd", "sub/1000092795"):
        assert [r.rejection.reason for r in records_for_image(image_id, root, "val")] == ["path_escapes_root"]
    sentences.write_bytes(b"A \xff [/EN#1/people man] .\n")
    assert records_for_image("1000092795", root, "val")[0].rejection.reason == "bad_encoding"
