import * as m0001 from './0001_init.js';
import * as m0002 from './0002_payloads.js';
import * as m0003 from './0003_request_order.js';
import * as m0004 from './0004_lost_deliveries.js';
import * as m0005 from './0005_ready_by_flow.js';
import * as m0006 from './0006_flow_deletions.js';
import * as m0007 from './0007_flow_format_2.js';
import * as m0008 from './0008_request_order_index_name.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Every migration, in order. Append only: a shipped migration is never edited. */
export const migrations: readonly Migration[] = [m0001, m0002, m0003, m0004, m0005, m0006, m0007, m0008];
