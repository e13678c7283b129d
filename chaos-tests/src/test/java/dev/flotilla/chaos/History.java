package dev.flotilla.chaos;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Every call the workload made and how it ended. {@code OK}: acknowledged. {@code FAILED}: the
 * node definitely did not do it (NOT_FOUND, FAILED_PRECONDITION, ...). {@code UNKNOWN}: no answer
 * or UNAVAILABLE/DEADLINE_EXCEEDED/INTERNAL: it may or may not have happened.
 */
final class History {
  enum Outcome { OK, FAILED, UNKNOWN }

  record Op(long seq, String client, String kind, String sandboxId, int node, long startNanos, long endNanos,
      Outcome outcome, String code) {
    long millis() {
      return (endNanos - startNanos) / 1_000_000;
    }
  }

  private final List<Op> ops = new ArrayList<>();
  private final AtomicLong seq = new AtomicLong();

  synchronized Op record(String client, String kind, String sandboxId, int node, long start, Outcome outcome, String code) {
    Op op = new Op(seq.incrementAndGet(), client, kind, sandboxId, node, start, System.nanoTime(), outcome, code);
    ops.add(op);
    return op;
  }

  static Outcome outcomeOf(Throwable t) {
    if (t instanceof StatusRuntimeException s) {
      Status.Code c = s.getStatus().getCode();
      return switch (c) {
        case NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT, ALREADY_EXISTS, RESOURCE_EXHAUSTED, PERMISSION_DENIED,
            UNAUTHENTICATED -> Outcome.FAILED;
        default -> Outcome.UNKNOWN;
      };
    }
    return Outcome.UNKNOWN;
  }

  static String codeOf(Throwable t) {
    return t instanceof StatusRuntimeException s ? s.getStatus().getCode().name() : t.getClass().getSimpleName();
  }

  synchronized List<Op> ops() {
    return List.copyOf(ops);
  }

  /** "kind outcome/code" -> count, for the report. */
  synchronized Map<String, Integer> summary() {
    Map<String, Integer> m = new TreeMap<>();
    for (Op o : ops) m.merge(o.kind() + " " + (o.outcome() == Outcome.OK ? "OK" : o.outcome() + "/" + o.code()), 1, Integer::sum);
    return m;
  }
}
