/**
 * SQL condition (both stores) true while an execution may still change: not completed or filtered.
 * Those are the request's one finished run; a later status or step write comes from a delivery
 * that lost its lease while another one finished the request (its instance stalled or was cut
 * off), and would turn a completed execution back into `retrying` with no job left to end it.
 * `dead` is not such an end: a retried dead letter reopens its execution.
 */
export const NOT_FINISHED_SQL = "status NOT IN ('completed', 'filtered')";
