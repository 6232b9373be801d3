import Type from 'typebox';
import { Id } from '../core/flow.js';

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  before: Type.Optional(Id),
};

/** `{items, next}`: next is the `before` value for the following page, absent on the last page. */
export function page<T extends { id: string }, V>(items: T[], limit: number, view: (t: T) => V) {
  const last = items[items.length - 1];
  return { items: items.map(view), ...(items.length === limit && last ? { next: last.id } : {}) };
}
