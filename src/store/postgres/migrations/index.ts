import * as m0001 from './0001_init.js';
import * as m0002 from './0002_payloads.js';
import * as m0003 from './0003_instances.js';
import * as m0004 from './0004_attachments.js';
import * as m0005 from './0005_settings.js';
import * as m0006 from './0006_request_order.js';
import * as m0007 from './0007_lost_deliveries.js';
import * as m0008 from './0008_ready_by_flow.js';
import * as m0009 from './0009_flow_deletions.js';
import * as m0010 from './0010_ready_by_flow_id.js';
import * as m0011 from './0011_flow_owners.js';
import * as m0012 from './0012_flow_holders.js';
import * as m0013 from './0013_instances_runs_flows.js';
import * as m0014 from './0014_instances_queue.js';
import * as m0015 from './0015_instances_schema_version.js';
import * as m0016 from './0016_request_order_index_name.js';
import * as m0017 from './0017_carried_requests.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Every migration, in order. Append only: a shipped migration is never edited. */
export const migrations: readonly Migration[] = [m0001, m0002, m0003, m0004, m0005, m0006, m0007, m0008, m0009, m0010, m0011, m0012, m0013, m0014, m0015, m0016, m0017];
