import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real models and real LevelDB: generous per-test time, one worker per core.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // The memory tests collect garbage before they sample the heap.
    execArgv: ['--expose-gc'],
    maxWorkers: 2,
    setupFiles: ['test/setup.ts'],
  },
});
