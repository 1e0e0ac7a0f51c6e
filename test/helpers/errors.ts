import { isSplitfitError, type SplitfitError } from '../../src/errors.js';

/** The SplitfitError a promise rejects with; any other outcome fails the test. */
export async function rejection(promise: Promise<unknown>): Promise<SplitfitError> {
  try {
    await promise;
  } catch (err) {
    if (isSplitfitError(err)) return err;
    throw err;
  }
  throw new Error('expected a SplitfitError, the promise resolved');
}
