package dev.flotilla.chaos;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Every call the workload made and how it ended, and the windows of the faults injected meanwhile:
 * what {@link HistoryChecker} reads. {@code OK}: acknowledged (for an exec: it answered, whatever
 * it printed). {@code FAILED}: the node definitely did not do it (NOT_FOUND, FAILED_PRECONDITION,
 * ...). {@code UNKNOWN}: no answer or UNAVAILABLE/DEADLINE_EXCEEDED/INTERNAL: it may or may not
 * have happened.
 */
final class History {
  enum Outcome { OK, FAILED, UNKNOWN }

  /**
   * What an answered exec printed, as {@link Workload#READ_BACK} prints it, from inside the VM:
   * the sandbox id and incarnation the guest agent put in its environment, and the per-sandbox
   * value the sandbox's main process wrote from its recorded spec. Unparseable output has
   * {@code incarnation} -1 and keeps the raw text.
   */
  record Seen(String sandboxId, long incarnation, String value, int exitCode, String raw) {
    static Seen parse(String stdout, int exitCode) {
      String[] f = stdout.strip().split(" ", -1);
      if (f.length != 3) return new Seen("", -1, "", exitCode, stdout);
      long inc;
      try {
        inc = Long.parseLong(f[1]);
      } catch (NumberFormatException e) {
        inc = -1;
      }
      return new Seen(f[0], inc, f[2], exitCode, stdout);
    }
  }

  /**
   * One call. {@code sandboxId} is the id called (for a create: the id answered, or the request id
   * when there was no answer); {@code requestId} is a create's (else empty); {@code seen} an
   * answered exec's output (else null).
   */
  record Op(long seq, String client, String kind, String sandboxId, int node, long startNanos, long endNanos,
      Outcome outcome, String code, String requestId, Seen seen) {
    long millis() {
      return (endNanos - startNanos) / 1_000_000;
    }
  }

  /** A fault's window: from its injection to the end of its repair (the node serving again, ...). */
  record Fault(String name, long startNanos, long endNanos) {}

  /** An open fault window; closing it records it. */
  final class Window implements AutoCloseable {
    private final String name;
    private final long start = System.nanoTime();
    private boolean closed;

    private Window(String name) {
      this.name = name;
    }

    @Override
    public void close() {
      if (closed) return;
      closed = true;
      fault(name, start, System.nanoTime());
    }
  }

  private final List<Op> ops = new ArrayList<>();
  private final List<Fault> faults = new ArrayList<>();
  private final AtomicLong seq = new AtomicLong();

  synchronized Op record(String client, String kind, String sandboxId, int node, long start, Outcome outcome, String code) {
    return record(client, kind, sandboxId, node, start, outcome, code, "", null);
  }

  synchronized Op record(String client, String kind, String sandboxId, int node, long start, Outcome outcome, String code,
      String requestId, Seen seen) {
    Op op = new Op(seq.incrementAndGet(), client, kind, sandboxId, node, start, System.nanoTime(), outcome, code, requestId, seen);
    ops.add(op);
    return op;
  }

  /** Records a fault that was injected at {@code startNanos} and repaired at {@code endNanos}. */
  synchronized void fault(String name, long startNanos, long endNanos) {
    faults.add(new Fault(name, startNanos, endNanos));
  }

  /** Opens a fault window now: {@code try (var f = history.fault("partition 2|1")) { ... heal }}. */
  Window fault(String name) {
    return new Window(name);
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

  synchronized List<Fault> faults() {
    return List.copyOf(faults);
  }

  /** "kind outcome/code" -> count, for the report. */
  synchronized Map<String, Integer> summary() {
    Map<String, Integer> m = new TreeMap<>();
    for (Op o : ops) {
      String how = o.outcome() == Outcome.OK ? (o.code().equals("OK") ? "OK" : "OK/" + o.code()) : o.outcome() + "/" + o.code();
      m.merge(o.kind() + " " + how, 1, Integer::sum);
    }
    return m;
  }
}
