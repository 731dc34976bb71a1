from transformers import AutoTokenizer

from helpers import shapes
from helpers.vocabulary import BOS, EOS, UNK, build_tokenizer, caption_words


def test_tokenizer_round_trip_after_reload(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    captions = shapes.all_single_object_captions() + ["a red circle and a blue square", "a handwritten seven"]
    for caption in captions:
        ids = reloaded(caption)["input_ids"]
        assert ids == tokenizer(caption)["input_ids"]
        assert reloaded.decode(ids, skip_special_tokens=True) == caption


def test_caption_framed_by_special_tokens():
    tokenizer = build_tokenizer()
    ids = tokenizer("A Small RED circle")["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids(BOS)
    assert ids[-1] == tokenizer.convert_tokens_to_ids(EOS)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a small red circle"


def test_unknown_word_maps_to_unk():
    tokenizer = build_tokenizer()
    ids = tokenizer("a zebra")["input_ids"]
    assert ids[2] == tokenizer.convert_tokens_to_ids(UNK)


def test_end_of_text_id_is_not_legacy_two():
    assert build_tokenizer().eos_token_id != 2


def test_vocabulary_covers_every_caption_word():
    words = set(caption_words())
    for caption in shapes.all_single_object_captions():
        assert set(caption.split()) <= words


def test_padding_is_on_the_right():
    batch = build_tokenizer()(["a red circle", "a small red circle on the left"], padding=True)
    assert batch["attention_mask"][0][-1] == 0
    assert batch["input_ids"][0][-1] == build_tokenizer().pad_token_id
