import { defineConfig } from 'vitest/config';

/**
 * These files stop or restart shared services (rabbitmqctl stop_app, PostgreSQL restart): they run
 * after everything else, one at a time, so no other file sees a service vanish under it.
 */
const SERVICE_DISRUPTING = ['test/conformance/rabbitmq.test.ts', 'test/e2e/distributed.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Conformance and e2e suites start real servers and processes; keep files in separate forks.
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: { name: 'main', include: ['test/**/*.test.ts'], exclude: SERVICE_DISRUPTING, fileParallelism: true, maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'services', include: SERVICE_DISRUPTING, fileParallelism: false, maxWorkers: 1, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
