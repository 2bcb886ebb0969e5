"""GranSynth as LLaVA instruction data: valid LLaVA records (the stage-3 dataset's checks), boxes relative to
the padded square, attribute questions only where they name one object."""
from granvit_mm.core.box_text import parse_box
from granvit_mm.core.geometry import SquareGeometry
from granvit_mm.core.prompts import CAPTION2BBOX_PROMPT
from granvit_mm.toy.gran_synth import object_attributes
from granvit_mm.toy.gran_synth_instruct import attribute_questions, read_gran, write_instructions
from granvit_mm.xtuner.instruct_dataset import check_conversation


def test_records_are_valid_llava_and_boxes_are_padded_square(tmp_path):
    import json

    from granvit_mm.toy.gran_synth import generate
    generate(str(tmp_path / 'gs'), num_train=6, num_val=2, image_size=96, seed=2)
    counts = write_instructions(str(tmp_path / 'gs'), str(tmp_path / 'out'))
    assert counts == {'train': 6, 'val': 2}
    records = json.load(open(tmp_path / 'out' / 'train.json'))
    grans = list(read_gran(str(tmp_path / 'gs' / 'annotations' / 'train.jsonl')))
    prefix = CAPTION2BBOX_PROMPT.split('{')[0]
    grounded = 0
    for rec, gran in zip(records, grans):
        check_conversation(rec)  # alternating, one <image>, no empty answer
        assert rec['image'] == gran['image'] and 1 <= len(rec['conversations']) // 2 <= 4
        geom = SquareGeometry(gran['height'], gran['width'], 1)
        turns = rec['conversations']
        for q, a in zip(turns[::2], turns[1::2]):
            if q['value'].replace('<image>\n', '').startswith(prefix):
                caption = q['value'].split(prefix)[1]
                [region] = [r for r in gran['regions'] if r['caption'] == caption]
                assert max(abs(x - y) for x, y in zip(parse_box(a['value']),
                                                      geom.to_normalized(region["bbox"])[0])) <= 5e-4 + 1e-6
                grounded += 1
    assert grounded > 0


def test_attribute_questions_name_one_object():
    caps = ['a small red solid circle', 'a small blue solid circle', 'a large red striped square']
    record = dict(regions=[dict(caption=c, bbox=[0, 0, 1, 1]) for c in caps])
    qs = attribute_questions(record)
    colour_qs = [(q, a) for q, a, _ in qs if q.startswith('What colour')]
    # the two small solid circles differ only in colour: no colour question about them
    assert colour_qs == [('What colour is the large striped square? Answer with one word.', 'red')]
    for q, a, i in qs:
        assert a in object_attributes(caps[i]).values()
