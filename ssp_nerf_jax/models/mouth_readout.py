"""A linear read-out from a frame's audio feature window to its mouth opening.

The field learns the mean face long before it learns to make the mouth
depend on a learned audio code: on a 20 s real clip at the CPU budget the
code barely varies across frames and the rendered mouth stays the average
one.  With `config.model.mouth_condition` the field is also given one
number per frame, the mouth opening, which it cannot average away:

  - training frames use their measured opening (`mouth_open`, from the
    landmarks of `python -m ssp_nerf_jax.preprocess` or the synthetic
    data's truth), so the field learns what an opening looks like;
  - every other frame (validation, a new speech track) uses the opening
    predicted from its audio by this read-out, a ridge regression fitted
    once on the training frames before training starts and kept in the
    parameters (`models.mouth.MouthReadout`, never trained by the
    optimizer).  Its predictions are then mapped onto the measured
    openings' distribution, rank for rank (`quantile_map`): ridge
    predictions are shrunk towards the mean opening, and a field driven by
    them draws the same half-open mouth in every frame; mapped, a
    prediction as high as the 90th percentile of the predictions gets the
    opening of the 90th percentile of the measured openings, so the field
    sees openings spread as in training.

Ridge, not a layer trained with the NeRF: with ~500 frames and a 16 x 29
window the read-out overfits unless it is regularised, and closed-form ridge
with its strength chosen by cross-validation over contiguous blocks of
frames is the best linear predictor we can pick without the val frames.
`python -m ssp_nerf_jax.benchmarks.audio_probe` reports how well it does.
"""
import numpy as np

from ssp_nerf_jax.runtime import errors

# Wide windows of pretrained speech features (16 x 384 and more) need the
# large strengths; MFCC windows (16 x 29) pick 100-1000.
RIDGE_STRENGTHS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
CV_FOLDS = 5
# Fewer measured train frames than this give no usable read-out.
MIN_FRAMES = 20


def correlate_or_zero(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two [N] series (0 if either is constant)."""
  a = np.asarray(a, np.float64) - np.mean(a)
  b = np.asarray(b, np.float64) - np.mean(b)
  norm = np.sqrt(np.sum(a * a) * np.sum(b * b))
  return float(np.sum(a * b) / norm) if norm > 0 else 0.0


def standardise(x: np.ndarray):
  """(z, mean, scale): x [N, D] with each column at mean 0 and std 1."""
  x = np.asarray(x, np.float64)
  mean, scale = x.mean(0), x.std(0) + 1e-8
  return (x - mean) / scale, mean, scale


def ridge_weights(z: np.ndarray, y: np.ndarray, strengths) -> np.ndarray:
  """Ridge weights of centred targets on standardised inputs, every
  strength from one eigendecomposition.

  The primal solution (z'z + s I)^-1 z'y decomposes the D x D matrix z'z;
  when D > N the equal dual one z'(zz' + s I)^-1 y decomposes the N x N
  kernel zz' instead, so the cost is O(N D min(N, D)), not O(D^3).
  Directions with no variance get no weight (the least-norm solution at
  strength 0, as lstsq).

  Args:
    z: [N, D] standardised inputs.
    y: [N] centred targets.
    strengths: lambdas of the L2 penalty.

  Returns:
    float64 [len(strengths), D].
  """
  z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
  dual = z.shape[1] > z.shape[0]
  eigenvalues, eigenvectors = np.linalg.eigh(z @ z.T if dual else z.T @ z)
  projected = eigenvectors.T @ (y if dual else z.T @ y)
  tolerance = max(eigenvalues.max(), 0.0) * max(z.shape) * np.finfo(float).eps
  weights = []
  for strength in strengths:
    denominator = eigenvalues + strength
    inverse = np.where(denominator > tolerance,
                       1.0 / np.where(denominator > tolerance, denominator, 1),
                       0.0)
    solution = eigenvectors @ (inverse * projected)
    weights.append(z.T @ solution if dual else solution)
  return np.stack(weights)


def ridge_fit(x: np.ndarray, y: np.ndarray, strength: float) -> dict:
  """Ridge regression on standardised inputs, with an unpenalised intercept.

  Args:
    x: [N, D] inputs.
    y: [N] targets.
    strength: lambda of the L2 penalty on the weights of the standardised
      inputs (0: least squares).

  Returns:
    {'mean': [D], 'scale': [D], 'weights': [D], 'offset': []} float64,
    read by `predict`.
  """
  z, mean, scale = standardise(x)
  offset = float(np.mean(y))
  weights = ridge_weights(z, np.asarray(y, np.float64) - offset,
                          [strength])[0]
  return {'mean': mean, 'scale': scale, 'weights': weights,
          'offset': np.asarray(offset)}


def predict(readout: dict, x: np.ndarray) -> np.ndarray:
  """[M] predictions of a `ridge_fit` read-out for inputs x [M, D]."""
  z = (np.asarray(x, np.float64) - readout['mean']) / readout['scale']
  return z @ readout['weights'] + readout['offset']


def cross_validate(x: np.ndarray, y: np.ndarray, strengths=RIDGE_STRENGTHS,
                   folds: int = CV_FOLDS):
  """Held-out predictions of every strength over `folds` contiguous blocks
  (neighbouring frames are alike: random folds would leak).  One
  decomposition per fold serves every strength (`ridge_weights`).

  Returns:
    (scores [folds, len(strengths)]: each block's Pearson r,
     predictions [len(strengths), N]: each frame's from the fit without
     its block).
  """
  y = np.asarray(y, np.float64)
  scores = np.zeros((folds, len(strengths)))
  predictions = np.zeros((len(strengths), len(y)))
  for fold, held in enumerate(np.array_split(np.arange(len(y)), folds)):
    kept = np.setdiff1d(np.arange(len(y)), held)
    z, mean, scale = standardise(x[kept])
    offset = np.mean(y[kept])
    weights = ridge_weights(z, y[kept] - offset, strengths)
    held_z = (np.asarray(x[held], np.float64) - mean) / scale
    predictions[:, held] = weights @ held_z.T + offset
    for i in range(len(strengths)):
      scores[fold, i] = correlate_or_zero(predictions[i, held], y[held])
  return scores, predictions


def choose_strength(x: np.ndarray, y: np.ndarray,
                    strengths=RIDGE_STRENGTHS, folds: int = CV_FOLDS):
  """(strength, r): the ridge strength with the best mean held-out Pearson r
  (`cross_validate`), and that r."""
  scores, _ = cross_validate(x, y, strengths, folds)
  best = int(np.argmax(scores.mean(0)))  # the first of equal scores
  return strengths[best], float(scores.mean(0)[best])


def quantile_map(held_out: np.ndarray, y: np.ndarray,
                 knots: int) -> tuple[np.ndarray, np.ndarray]:
  """The monotone map of predictions onto the measured openings'
  distribution, as `knots` points of a piecewise-linear function.

  Args:
    held_out: [N] held-out predictions of the train frames
      (`cross_validate`): distributed as a new frame's prediction, unlike
      the in-sample ones.
    y: [N] the measured openings.
    knots: K >= 2 quantile levels, evenly spaced over [0, 1].
  Returns:
    (float64 [K] the predictions' quantiles, strictly increasing;
     float64 [K] the openings' quantiles, non-decreasing): a prediction p
    maps to interp(p, first, second), the measured range beyond the ends.
  """
  levels = np.linspace(0.0, 1.0, knots)
  inputs = np.quantile(np.asarray(held_out, np.float64), levels)
  # Ties (a constant stretch of predictions) would make interp ambiguous.
  inputs = inputs + np.arange(knots) * 1e-9 * max(np.ptp(inputs), 1.0)
  return inputs, np.quantile(np.asarray(y, np.float64), levels)


def centre_windows(audio: np.ndarray) -> np.ndarray:
  """[N, S * C]: each frame's own feature window, flattened, from the
  dataset's [N, A, S, C] context windows (the frame is at A // 2)."""
  return audio[:, audio.shape[1] // 2].reshape(len(audio), -1)


def fit_readout(audio: np.ndarray, mouth_open: np.ndarray, knots: int = 0) -> dict:
  """The read-out of the training frames (see the module docstring).

  Args:
    audio: [N, A, S, C] the frames' context windows.
    mouth_open: [N] measured openings; NaN where not measured (skipped).
    knots: points of the `quantile_map` (0: none, raw predictions).

  Returns:
    `ridge_fit`'s dict, float32, with the chosen 'strength' and its
    cross-validated 'r_cv' as [] arrays, and with knots the map's
    'map_in' and 'map_out' [knots].

  Raises:
    errors.UserError: fewer than MIN_FRAMES measured frames.
  """
  measured = np.isfinite(mouth_open)
  if measured.sum() < MIN_FRAMES:
    raise errors.UserError(
        f'config.model.mouth_condition needs the measured mouth opening '
        f'(mouth_open) of at least {MIN_FRAMES} train frames, the dataset has '
        f'{int(measured.sum())}: use a video config, a folder made by python '
        '-m ssp_nerf_jax.preprocess, or the synthetic data (or set '
        'config.model.mouth_condition=False)')
  x = centre_windows(np.asarray(audio)[measured])
  y = np.asarray(mouth_open, np.float64)[measured]
  scores, held_out = cross_validate(x, y)
  best = int(np.argmax(scores.mean(0)))
  strength, r_cv = RIDGE_STRENGTHS[best], scores.mean(0)[best]
  readout = ridge_fit(x, y, strength)
  readout.update(strength=np.asarray(strength), r_cv=np.asarray(r_cv))
  if knots:
    readout['map_in'], readout['map_out'] = quantile_map(held_out[best], y,
                                                         knots)
  return {name: np.asarray(value, np.float32)
          for name, value in readout.items()}
