// One suite, every architecture family (see suite.ts and families.ts).
import { describe, it } from 'vitest';
import { FAMILIES } from './families.js';
import { CHECKS, type CheckName, REAL } from './suite.js';

for (const family of FAMILIES) {
  describe(`conformance: ${family.name}`, () => {
    for (const name of Object.keys(CHECKS) as CheckName[]) {
      it(name, async () => {
        await CHECKS[name](family, REAL);
      });
    }
  });
}
