"""Temporal annotation files (vad_jax.data.annotations): UCF-Crime and XD-Violence parsers, video
keys, and per-frame truth. Every bad input must name the file and line."""

import numpy as np
import pytest

from vad_jax.data.annotations import (Annotation, frame_truth, parse_ucf_temporal, parse_xd,
                                      video_key)

UCF_LINES = [
    'Abuse028_x264.mp4  Abuse  165  240  -1  -1  ',
    '',
    'Arson011_x264  Arson  150  420  680  1267',
    'Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1',
    'Stealing019_x264.mp4\tStealing 2730 2790 4170 4350 5000 5010',   # a copy with a third pair
]


def _write(tmp_path, lines, name='Temporal_Anomaly_Annotation_for_Testing_Videos.txt'):
  path = tmp_path / name
  path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
  return str(path)


@pytest.mark.parametrize('name', ['Abuse/Abuse028_x264.mp4', 'Abuse028_x264', 'Abuse028_x264.MP4',
                                  '/x/Abuse028_x264_i3d.npy', 'Abuse028_x264__5.npy',
                                  'C:\\feats\\Abuse028_x264__0.npy', 'Abuse028_x264.avi'])
def test_video_key_strips_folders_extensions_and_feature_suffixes(name):
  assert video_key(name) == 'Abuse028_x264'


def test_video_key_keeps_the_dots_and_hashes_of_xd_names():
  name = 'Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6'
  assert video_key(name) == name
  assert video_key(f'/feats/{name}__3.npy') == name
  assert video_key(f'{name}.mp4') == name


def test_parse_ucf_temporal(tmp_path):
  path = _write(tmp_path, UCF_LINES)
  ann = parse_ucf_temporal(path)
  assert list(ann) == ['Abuse028_x264', 'Arson011_x264', 'Normal_Videos_003_x264',
                       'Stealing019_x264']
  assert ann['Abuse028_x264'] == Annotation('Abuse028_x264', 'Abuse', ((165, 240),), f'{path}:1')
  assert ann['Arson011_x264'].intervals == ((150, 420), (680, 1267))
  assert ann['Arson011_x264'].where == f'{path}:3'
  assert ann['Normal_Videos_003_x264'].intervals == ()
  assert ann['Normal_Videos_003_x264'].class_name == 'Normal'
  assert ann['Stealing019_x264'].intervals == ((2730, 2790), (4170, 4350), (5000, 5010))


@pytest.mark.parametrize('line,words', [
    ('Abuse030_x264.mp4  Abuse  1275  1360  -1', ['columns', '5']),
    ('Abuse030_x264.mp4  Abuse  1275', ['columns', '3']),
    ('Abuse030_x264.mp4  Abuse  12a5  1360  -1  -1', ['integer', '12a5']),
    ('Abuse030_x264.mp4  Abuse  1360  1275  -1  -1', ['starts after it ends', '(1360, 1275)']),
    ('Abuse030_x264.mp4  Abuse  0  1275  -1  -1', ['below 1', '(0, 1275)']),
    ('Abuse030_x264.mp4  Abuse  100  200  -1  300', ['one -1', '(-1, 300)']),
    ('Abuse030_x264.mp4  Abduction  100  200  -1  -1', ["unknown class 'Abduction'", 'Vandalism',
                                                         'RoadAccidents']),
    ('Normal_Videos_006_x264.mp4  Normal  100  200  -1  -1', ['Normal', 'intervals']),
])
def test_parse_ucf_temporal_errors_name_file_and_line(tmp_path, line, words):
  path = _write(tmp_path, UCF_LINES[:3] + [line])
  with pytest.raises(ValueError) as e:
    parse_ucf_temporal(path)
  assert f'{path}:4' in str(e.value)
  assert line.split()[0] in str(e.value)   # the offending text
  for w in words:
    assert w in str(e.value)


def test_parse_ucf_temporal_duplicate_names_both_lines(tmp_path):
  path = _write(tmp_path, UCF_LINES + ['Arson011_x264.mp4  Arson  1  2  -1  -1'])
  with pytest.raises(ValueError, match='twice') as e:
    parse_ucf_temporal(path)
  assert f'{path}:6' in str(e.value) and f'{path}:3' in str(e.value)
  assert 'Arson011_x264' in str(e.value)


def test_parse_missing_file_names_it(tmp_path):
  for parse in (parse_ucf_temporal, parse_xd):
    with pytest.raises(FileNotFoundError, match='nowhere.txt'):
      parse(str(tmp_path / 'nowhere.txt'))


XD_LINES = [
    'v=S-7rRLrxnVQ__#1_label_B4-0-0 0 1517 1970 3038',
    'Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 157 180 185 244',
    'v=U6MC8JJJZSY__#1_label_G-0-0.mp4 150 779',
]


def test_parse_xd_stores_the_published_half_open_reading_as_1_based_inclusive(tmp_path):
  path = _write(tmp_path, XD_LINES, 'annotations.txt')
  ann = parse_xd(path)
  assert list(ann) == ['v=S-7rRLrxnVQ__#1_label_B4-0-0',
                       'Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6',
                       'v=U6MC8JJJZSY__#1_label_G-0-0']
  a = ann['v=S-7rRLrxnVQ__#1_label_B4-0-0']
  assert a.class_name is None and a.where == f'{path}:1'
  assert a.intervals == ((1, 1517), (1971, 3038))
  # Published builders mark gt[s:e] (0-based, end exclusive): the same frames.
  mask, _ = frame_truth(a.intervals, 4000)
  want = np.zeros(4000, np.uint8)
  want[0:1517] = 1
  want[1970:3038] = 1
  np.testing.assert_array_equal(mask, want)
  assert parse_xd(path, end='inclusive')['v=U6MC8JJJZSY__#1_label_G-0-0'].intervals == ((151, 780),)


@pytest.mark.parametrize('line,words', [
    ('v=x__#1_label_B1-0-0 10 20 30', ['columns', '4']),
    ('v=x__#1_label_B1-0-0', ['columns', '1']),
    ('v=x__#1_label_B1-0-0 30 20', ['starts after it ends']),
    ('v=x__#1_label_B1-0-0 20 20', ['empty']),
    ('v=x__#1_label_B1-0-0 1.5 20', ['integer']),
    ('v=S-7rRLrxnVQ__#1_label_B4-0-0 1 2', ['twice', ':1']),
])
def test_parse_xd_errors_name_file_and_line(tmp_path, line, words):
  path = _write(tmp_path, XD_LINES + [line], 'annotations.txt')
  with pytest.raises(ValueError) as e:
    parse_xd(path)
  assert f'{path}:4' in str(e.value)
  for w in words:
    assert w in str(e.value)


def test_frame_truth_bases():
  mask, warnings = frame_truth([(3, 5), (9, 9)], 12, base=1)
  np.testing.assert_array_equal(mask, [0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0])
  assert mask.dtype == np.uint8 and warnings == []
  mask, _ = frame_truth([(3, 5)], 8, base=0)
  np.testing.assert_array_equal(mask, [0, 0, 0, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(frame_truth([], 4)[0], [0, 0, 0, 0])


def test_frame_truth_start_past_the_end_is_an_error_naming_where_and_length():
  with pytest.raises(ValueError) as e:
    frame_truth([(1, 2), (33, 40)], 32, where='ann.txt:7')
  assert 'ann.txt:7' in str(e.value) and '32 frames' in str(e.value) and '(33, 40)' in str(e.value)
  with pytest.raises(ValueError, match='ann.txt:7'):
    frame_truth([(32, 40)], 32, base=0, where='ann.txt:7')   # 0-based 32: one past the end


def test_frame_truth_end_past_the_end_is_clipped_with_a_warning():
  mask, warnings = frame_truth([(30, 40)], 32, where='ann.txt:7')
  want = np.zeros(32, np.uint8)
  want[29:] = 1
  np.testing.assert_array_equal(mask, want)
  assert len(warnings) == 1
  assert 'ann.txt:7' in warnings[0] and '(30, 40)' in warnings[0] and '32 frames' in warnings[0]
