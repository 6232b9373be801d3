/** The inbound credential library: what the ingress calls to decide who may post to a flow. */
export * from './schema.js';
export * from './verify.js';
export * from './secret-box.js';
export * from './ip-allowlist.js';
export * from './rate-limit.js';
export * from './cors.js';
export * from './validate.js';
export { safeEqual, anyEqual } from './timing-safe.js';
export { BASIC_CHALLENGE } from './schemes/basic.js';
