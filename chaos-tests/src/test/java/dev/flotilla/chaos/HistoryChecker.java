package dev.flotilla.chaos;

import dev.flotilla.chaos.History.Fault;
import dev.flotilla.chaos.History.Op;
import dev.flotilla.chaos.History.Outcome;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Checks a workload's {@link History} after the fact (pure logic: no cluster, no clock). What the
 * execs printed from inside the VMs is compared with what the workload sent and saw, per sandbox:
 *
 * <ul>
 *   <li>{@link Kind#WRONG_OUTPUT}: an answered exec printed another sandbox's id, a value other
 *       than the one sent in that sandbox's spec at create (or none), or exited non-zero: the VM
 *       that answered is not running this sandbox's recorded spec. An exec killed by a signal
 *       before it printed its line (its VM stopped under it: a graceful hand-off, a delete) says
 *       nothing either way and is only counted as interrupted.
 *   <li>{@link Kind#STALE_INCARNATION}: an exec that <em>started</em> after an exec answered by
 *       incarnation n had <em>ended</em> was answered by an incarnation below n: an old VM served
 *       after a newer one had (two VMs of one sandbox, both serving).
 *   <li>{@link Kind#NOT_FOUND_AFTER_BOUND}: an acknowledged sandbox that no delete had been sent
 *       for (yet) was answered NOT_FOUND, in a call that started neither during a fault nor within
 *       the recovery bound after the last fault had ended: an acknowledged create lost.
 * </ul>
 */
final class HistoryChecker {
  enum Kind { WRONG_OUTPUT, STALE_INCARNATION, NOT_FOUND_AFTER_BOUND }

  /** What the workload knows of an acknowledged sandbox: the value it sent, when it was acknowledged. */
  record Expected(String value, long acknowledgedNanos) {}

  record Violation(Kind kind, String sandboxId, String detail) {
    @Override
    public String toString() {
      return kind + " " + sandboxId + ": " + detail;
    }
  }

  record Result(int ops, int execsChecked, int interrupted, int sandboxes, List<Violation> violations) {
    Map<Kind, Integer> counts() {
      Map<Kind, Integer> m = new EnumMap<>(Kind.class);
      for (Kind k : Kind.values()) m.put(k, 0);
      for (Violation v : violations) m.merge(v.kind(), 1, Integer::sum);
      return m;
    }

    @Override
    public String toString() {
      return ops + " calls, " + execsChecked + " answered execs of " + sandboxes + " sandboxes checked (" + interrupted
          + " more killed by a signal before they printed); violations " + counts();
    }
  }

  private final Duration bound;

  HistoryChecker(Duration recoveryBound) {
    this.bound = recoveryBound;
  }

  Result check(List<Op> ops, List<Fault> faults, Map<String, Expected> expected) {
    long origin = ops.stream().mapToLong(Op::startNanos).min().orElse(0);
    List<Violation> out = new ArrayList<>();
    Map<String, List<Op>> bySandbox = new TreeMap<>();
    for (Op o : ops) bySandbox.computeIfAbsent(o.sandboxId(), k -> new ArrayList<>()).add(o);
    int execs = 0;
    int interrupted = 0;
    for (var e : bySandbox.entrySet()) {
      String id = e.getKey();
      List<Op> mine = e.getValue();
      Expected want = expected.get(id);
      List<Op> all = mine.stream().filter(o -> o.kind().equals("exec") && o.outcome() == Outcome.OK && o.seen() != null).toList();
      List<Op> answered = all.stream().filter(o -> !interrupted(o.seen())).toList();
      execs += answered.size();
      interrupted += all.size() - answered.size();
      for (Op o : answered) wrongOutput(id, o, want, origin).ifPresent(out::add);
      out.addAll(staleIncarnations(id, answered, origin));
      if (want != null) out.addAll(notFoundAfterBound(id, mine, want, faults, origin));
    }
    return new Result(ops.size(), execs, interrupted, bySandbox.size(), out);
  }

  /** Killed by a signal (exit status 128 + n) before it printed its line. */
  static boolean interrupted(History.Seen s) {
    return s.exitCode() > 128 && s.incarnation() < 0;
  }

  private static java.util.Optional<Violation> wrongOutput(String id, Op o, Expected want, long origin) {
    History.Seen s = o.seen();
    String why = null;
    if (s.incarnation() < 0) why = "unreadable output, exit code " + s.exitCode();
    else if (!s.sandboxId().equals(id)) why = "served by sandbox " + s.sandboxId();
    else if (want == null) why = "exec answered for a sandbox the workload never had acknowledged";
    else if (s.value().isEmpty()) why = "no value: the main process of its spec had not written it";
    else if (!s.value().equals(want.value())) why = "value " + s.value() + ", sent at create " + want.value();
    else if (s.exitCode() != 0 && s.exitCode() <= 128) why = "exit code " + s.exitCode();
    if (why == null) return java.util.Optional.empty();
    return java.util.Optional.of(new Violation(Kind.WRONG_OUTPUT, id, why + " (" + describe(o, origin) + ", printed "
        + s.raw().strip().replace('\n', '|') + ")"));
  }

  /**
   * Sweeps the answered execs by start time; every exec that ended before the current one started
   * raises the floor to its incarnation.
   */
  private static List<Violation> staleIncarnations(String id, List<Op> answered, long origin) {
    List<Op> valid = answered.stream().filter(o -> o.seen().incarnation() >= 0 && o.seen().sandboxId().equals(id)).toList();
    List<Op> byEnd = valid.stream().sorted(Comparator.comparingLong(Op::endNanos)).toList();
    List<Op> byStart = valid.stream().sorted(Comparator.comparingLong(Op::startNanos)).toList();
    List<Violation> out = new ArrayList<>();
    int next = 0;
    Op floor = null;
    for (Op o : byStart) {
      while (next < byEnd.size() && byEnd.get(next).endNanos() < o.startNanos()) {
        Op ended = byEnd.get(next++);
        if (floor == null || ended.seen().incarnation() > floor.seen().incarnation()) floor = ended;
      }
      if (floor != null && o.seen().incarnation() < floor.seen().incarnation()) {
        out.add(new Violation(Kind.STALE_INCARNATION, id, "incarnation " + o.seen().incarnation() + " answered "
            + describe(o, origin) + " after incarnation " + floor.seen().incarnation() + " had answered "
            + describe(floor, origin)));
      }
    }
    return out;
  }

  private List<Violation> notFoundAfterBound(String id, List<Op> mine, Expected want, List<Fault> faults, long origin) {
    List<Violation> out = new ArrayList<>();
    for (Op o : mine) {
      if (!o.code().equals("NOT_FOUND") || o.kind().equals("create")) continue;
      if (o.startNanos() < want.acknowledgedNanos()) continue;
      // a delete sent before this call answered may have removed it (for a delete: one sent before it)
      long before = o.kind().equals("delete") ? o.startNanos() : o.endNanos();
      boolean maybeDeleted = mine.stream().anyMatch(d -> d != o && d.kind().equals("delete") && d.startNanos() < before
          && !(d.outcome() == Outcome.FAILED && !d.code().equals("NOT_FOUND")));
      if (maybeDeleted) continue;
      String excuse = excuse(o.startNanos(), faults);
      if (excuse != null) continue;
      out.add(new Violation(Kind.NOT_FOUND_AFTER_BOUND, id, "acknowledged, no delete sent, answered NOT_FOUND "
          + describe(o, origin) + " (" + sinceLastFault(o.startNanos(), faults) + ")"));
    }
    return out;
  }

  /** Non-null when a call started at {@code t} is excused: during a fault, or within the bound after one. */
  private String excuse(long t, List<Fault> faults) {
    for (Fault f : faults) {
      if (t >= f.startNanos() && t <= f.endNanos() + bound.toNanos()) return f.name();
    }
    return null;
  }

  private static String sinceLastFault(long t, List<Fault> faults) {
    return faults.stream().filter(f -> f.endNanos() <= t).max(Comparator.comparingLong(Fault::endNanos))
        .map(f -> (t - f.endNanos()) / 1_000_000 + " ms after fault '" + f.name() + "' ended")
        .orElse("no fault before it");
  }

  private static String describe(Op o, long origin) {
    return "#" + o.seq() + " " + o.kind() + " by " + o.client() + " via node " + o.node() + " at +" + (o.startNanos() - origin) / 1_000_000
        + ".." + (o.endNanos() - origin) / 1_000_000 + " ms";
  }
}
