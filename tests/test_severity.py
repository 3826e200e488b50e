"""Tests for seed 002's severity-based augmentation (vad_jax.data.severity)."""
import pickle

import numpy as np
import pytest

from vad_jax.data import severity as S


def textured(h=24, w=20, seed=0):
  """uint8 [h, w, 3]: a colour gradient with noise and a bright square (texture everywhere)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  img = np.stack([40 + 8 * xx, 60 + 6 * yy, 120 + 60 * np.sin(xx / 2.0 + yy / 3.0)], -1)
  img = img + rng.uniform(-20, 20, img.shape)
  img[h // 3:h // 2, w // 3:w // 2] = 230
  return np.clip(img, 0, 255).astype(np.uint8)


def test_severity_from_counts_matches_hand_computation():
  s = S.severity_from_counts([1000, 100, 10])
  np.testing.assert_allclose(s, [0.0, 0.5, 1.0], atol=1e-6)
  assert s.dtype == np.float32
  # a count of 0 is clamped to 1: log(400/1) is the span
  s = S.severity_from_counts([400, 20, 0, 400])
  np.testing.assert_allclose(s, [0.0, np.log(20) / np.log(400), 1.0, 0.0], atol=1e-6)
  np.testing.assert_allclose(S.severity_from_counts([400, 20, 0], 'medium'),
                             [0.0, 0.66 * np.log(20) / np.log(400), 0.66], atol=1e-6)
  np.testing.assert_array_equal(S.severity_from_counts([7, 7, 7]), [0, 0, 0])
  np.testing.assert_array_equal(S.severity_from_counts([5, 50], 'none'), [0, 0])
  assert S.severity_from_counts([5, 50], 'light')[0] == pytest.approx(0.33)
  with pytest.raises(ValueError, match='level'):
    S.severity_from_counts([1, 2], 'extreme')


def test_families_cover_the_ops():
  assert sorted(n for names in S.FAMILIES.values() for n in names) == sorted(S.OPS)
  assert set(S.FAMILY_PROB) == set(S.FAMILIES)
  assert S.FAMILIES['geometric'] == ('affine', 'perspective', 'elastic')


@pytest.mark.parametrize('name', sorted(S.OPS))
def test_op_identity_at_zero_and_changes_at_one(name):
  x = textured().astype(np.float32)
  same = S.OPS[name](x, np.random.default_rng(0), 0.0)
  np.testing.assert_array_equal(same, x)
  out = S.OPS[name](x, np.random.default_rng(0), 1.0)
  assert out.shape == x.shape and out.dtype == np.float32
  assert 0 <= out.min() and out.max() <= 255
  assert np.abs(out - x).mean() > 1.0, f'{name} barely changed the image'
  again = S.OPS[name](x, np.random.default_rng(0), 1.0)
  np.testing.assert_array_equal(out, again)
  np.testing.assert_array_equal(x, textured())          # the input is never written to


def test_affine_translation_moves_a_pixel():
  img = np.zeros((16, 16, 3), np.float32)
  img[8, 5] = 255
  m = S.affine_matrix(16, 16, translate=(3, -2))       # 3 right, 2 up
  np.testing.assert_allclose(m, [[1, 0, 3], [0, 1, -2], [0, 0, 1]], atol=1e-12)
  out = S.warp_affine(img, m)
  assert np.unravel_index(out[..., 0].argmax(), (16, 16)) == (6, 8)
  np.testing.assert_array_equal(out[6, 8], [255, 255, 255])
  assert out[8, 5].max() <= 1                           # the old place holds the mean colour


def test_affine_rotation_scale_shear_about_the_centre():
  m = S.affine_matrix(20, 20, angle=90)
  # a quarter turn counter-clockwise on screen: right of the centre goes above it
  np.testing.assert_allclose(m @ [15, 10, 1], [10, 5, 1], atol=1e-9)
  np.testing.assert_allclose(S.affine_matrix(20, 30, scale=2) @ [16, 10, 1], [17, 10, 1])
  np.testing.assert_allclose(S.affine_matrix(20, 20, shear=45) @ [10, 12, 1], [12, 12, 1])


def test_color_is_brightness_contrast_saturation_in_turn():
  x = textured().astype(np.float64)
  draw = np.random.default_rng(5)
  b, c, s = (1 + S._signed(draw, k * 0.8) for k in (0.4, 0.4, 0.6))
  x1 = x * b
  mean = (x1 @ [0.299, 0.587, 0.114]).mean()
  x2 = mean + c * (x1 - mean)
  grey = (x2 @ [0.299, 0.587, 0.114])[..., None]
  want = np.clip(grey + s * (x2 - grey), 0, 255)
  got = S.OPS['color'](x.astype(np.float32), np.random.default_rng(5), 0.8)
  np.testing.assert_allclose(got, want, atol=1e-3)


def test_sample_bilinear_interpolates_and_clamps():
  img = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
  out = S.sample_bilinear(img, np.array([[0.5, -3.0]]), np.array([[0.5, 9.0]]))
  np.testing.assert_allclose(out[0, 0], img.reshape(4, 3).mean(0))
  np.testing.assert_allclose(out[0, 1], img[0, 1])


def test_augment_shapes_determinism_and_identity():
  img = textured()
  out = S.augment(img, np.random.default_rng(3), 1.0)
  assert out.shape == img.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(out, S.augment(img, np.random.default_rng(3), 1.0))
  draws = [S.augment(img, np.random.default_rng(s), 1.0) for s in range(6)]
  assert len({d.tobytes() for d in draws}) == 6
  assert any(not np.array_equal(d, img) for d in draws)
  assert S.augment(img, np.random.default_rng(3), 0.0) is img
  np.testing.assert_array_equal(img, textured())       # the input is never written to
  with pytest.raises(ValueError, match='severity'):
    S.augment(img, np.random.default_rng(0), 1.5)


def test_random_map_uses_the_class_severity():
  img = textured()
  fn = S.random_map(S.severity_from_counts([100, 1]))  # class 0 majority, class 1 rarest
  fn = pickle.loads(pickle.dumps(fn))                   # it travels to grain worker processes
  major = fn({'image': img, 'label': np.int32(0), 'index': 4}, np.random.default_rng(0))
  assert major['image'] is img and major['index'] == 4
  changed = [not np.array_equal(fn({'image': img, 'label': 1}, np.random.default_rng(s))['image'], img)
             for s in range(4)]
  assert any(changed)
  other = S.random_map([0.0, 1.0], field='frame')({'frame': img, 'label': 1}, np.random.default_rng(1))
  np.testing.assert_array_equal(other['frame'], S.augment(img, np.random.default_rng(1), 1.0))
  with pytest.raises(ValueError, match='class_severity'):
    S.random_map([0.5, 2.0])


def test_command_writes_png(tmp_path):
  out = tmp_path / 'sub' / 'aug.png'
  S.main(['--out', str(out), '--size', '24', '--seed', '1'])
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert [p.name for p in out.parent.iterdir()] == ['aug.png']   # no temporary left behind
