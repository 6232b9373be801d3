/** The credential schemas are domain types (src/core/credentials.ts); re-exported for the verifiers. */
export * from '../core/credentials.js';
