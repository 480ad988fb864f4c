"""Linear read-out from a frame's audio feature window to its mouth opening.

Ridge with blocked cross-validation; predictions are mapped onto the measured
openings' distribution (`quantile_map`), as ridge shrinks them to the mean."""
import numpy as np

from ssp_nerf_jax.runtime import errors

# Wide windows of pretrained speech features need the large strengths.
RIDGE_STRENGTHS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
CV_FOLDS = 5
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
  """[len(strengths), D]: ridge of centred y [N] on z [N, D], one eigh."""
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
  """{'mean', 'scale', 'weights' [D], 'offset' []}; intercept unpenalised."""
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
  """(Pearson r [folds, L], held-out predictions [L, N]) for L strengths, over
  contiguous blocks: neighbouring frames are alike, random folds would leak."""
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
  """(strength, r) with the best mean held-out Pearson r (`cross_validate`)."""
  scores, _ = cross_validate(x, y, strengths, folds)
  best = int(np.argmax(scores.mean(0)))
  return strengths[best], float(scores.mean(0)[best])


def quantile_map(held_out: np.ndarray, y: np.ndarray,
                 knots: int) -> tuple[np.ndarray, np.ndarray]:
  """(inputs [K] increasing, outputs [K]): p -> interp(p, inputs, outputs) maps
  held-out predictions [N] (distributed like a new frame's) onto y [N]."""
  levels = np.linspace(0.0, 1.0, knots)
  inputs = np.quantile(np.asarray(held_out, np.float64), levels)
  # Ties (a constant stretch of predictions) would make interp ambiguous.
  inputs = inputs + np.arange(knots) * 1e-9 * max(np.ptp(inputs), 1.0)
  return inputs, np.quantile(np.asarray(y, np.float64), levels)


def centre_windows(audio: np.ndarray) -> np.ndarray:
  """[N, A, S, C] context windows -> [N, S * C] of each frame's own (A // 2)."""
  return audio[:, audio.shape[1] // 2].reshape(len(audio), -1)


def fit_readout(audio: np.ndarray, mouth_open: np.ndarray,
                knots: int = 0) -> dict:
  """`ridge_fit`'s dict in float32, with 'strength', 'r_cv' and with knots
  'map_in', 'map_out' [knots]; NaN openings are skipped."""
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
