package dev.flotilla.chaos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.chaos.History.Fault;
import dev.flotilla.chaos.History.Op;
import dev.flotilla.chaos.History.Outcome;
import dev.flotilla.chaos.History.Seen;
import dev.flotilla.chaos.HistoryChecker.Expected;
import dev.flotilla.chaos.HistoryChecker.Kind;
import dev.flotilla.chaos.HistoryChecker.Result;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Crafted histories: each kind of violation is caught, and what a correct cluster may do is not flagged. */
class HistoryCheckerTest {
  static final Duration BOUND = Duration.ofSeconds(60);
  static final Map<String, Expected> EXPECTED = Map.of("a", new Expected("va", ms(0)), "b", new Expected("vb", ms(0)));
  final HistoryChecker checker = new HistoryChecker(BOUND);
  final List<Op> ops = new ArrayList<>();
  final List<Fault> faults = new ArrayList<>();

  static long ms(long m) {
    return m * 1_000_000L;
  }

  /** An answered exec of {@code id} from {@code from} to {@code to} ms, printing what the VM printed. */
  void exec(String id, long from, long to, String printedId, long incarnation, String value) {
    ops.add(new Op(ops.size() + 1, "c", "exec", id, 1, ms(from), ms(to), Outcome.OK, "OK", "",
        Seen.parse(printedId + " " + incarnation + " " + value + "\n", 0)));
  }

  void failed(String kind, String id, long from, long to, Outcome outcome, String code) {
    ops.add(new Op(ops.size() + 1, "c", kind, id, 1, ms(from), ms(to), outcome, code, "", null));
  }

  Result check() {
    return checker.check(ops, faults, EXPECTED);
  }

  static void assertOnly(Kind kind, int n, Result r) {
    assertEquals(n, r.counts().get(kind), r.violations().toString());
    assertEquals(n, r.violations().size(), r.violations().toString());
  }

  @Test
  void aCleanHistoryPasses() {
    exec("a", 0, 10, "a", 1, "va");
    exec("b", 5, 12, "b", 1, "vb");
    // host loss: a's new incarnation answers; an exec that began before it answered may still be served by the old one
    faults.add(new Fault("host loss", ms(20), ms(40)));
    failed("exec", "a", 21, 24, Outcome.FAILED, "NOT_FOUND"); // during the fault
    exec("a", 25, 60, "a", 1, "va");
    exec("a", 30, 35, "a", 2, "va");
    exec("a", 34, 50, "a", 1, "va"); // began before incarnation 2 had answered: concurrent, allowed
    exec("a", 36, 37, "a", 2, "va");
    failed("exec", "b", 40 + 59_000, 40 + 59_010, Outcome.FAILED, "NOT_FOUND"); // within the bound after the fault
    // b deleted: NOT_FOUND afterwards, and during the delete, is no loss
    failed("delete", "b", 100_000, 100_500, Outcome.UNKNOWN, "UNAVAILABLE");
    failed("exec", "b", 100_400, 100_450, Outcome.FAILED, "NOT_FOUND");
    failed("delete", "b", 101_000, 101_100, Outcome.FAILED, "NOT_FOUND");
    // calls that were not answered say nothing
    failed("exec", "a", 100_000, 110_000, Outcome.UNKNOWN, "DEADLINE_EXCEEDED");
    Result r = check();
    assertTrue(r.violations().isEmpty(), r.violations().toString());
    assertEquals(6, r.execsChecked());
  }

  @Test
  void aValueOtherThanTheOneSentAtCreateIsWrongOutput() {
    exec("a", 0, 10, "a", 1, "va");
    exec("a", 20, 30, "a", 1, "vb");
    Result r = check();
    assertOnly(Kind.WRONG_OUTPUT, 1, r);
    assertTrue(r.violations().get(0).detail().contains("value vb"), r.violations().toString());
  }

  @Test
  void anotherSandboxAnsweringIsWrongOutput() {
    exec("a", 0, 10, "b", 1, "va");
    assertOnly(Kind.WRONG_OUTPUT, 1, check());
  }

  @Test
  void noValueOrUnreadableOutputOrAFailedCommandIsWrongOutput() {
    exec("a", 0, 10, "a", 1, "");
    ops.add(new Op(ops.size() + 1, "c", "exec", "a", 1, ms(20), ms(30), Outcome.OK, "OK", "", Seen.parse("sh: oops\n", 0)));
    ops.add(new Op(ops.size() + 1, "c", "exec", "a", 1, ms(40), ms(50), Outcome.OK, "OK", "", Seen.parse("a 1 va\n", 1)));
    assertOnly(Kind.WRONG_OUTPUT, 3, check());
  }

  @Test
  void anExecKilledBySignalBeforeItPrintedIsInterruptedNotWrong() {
    // its VM stopped under it (exit 128 + SIGTERM), as in a graceful hand-off
    ops.add(new Op(ops.size() + 1, "c", "exec", "a", 1, ms(0), ms(10), Outcome.OK, "SIGNAL", "", Seen.parse("", 143)));
    Result r = check();
    assertTrue(r.violations().isEmpty(), r.violations().toString());
    assertEquals(1, r.interrupted());
    assertEquals(0, r.execsChecked());
    // killed after it printed a wrong line: still wrong
    ops.add(new Op(ops.size() + 1, "c", "exec", "a", 1, ms(20), ms(30), Outcome.OK, "SIGNAL", "", Seen.parse("a 1 vb\n", 143)));
    assertOnly(Kind.WRONG_OUTPUT, 1, check());
  }

  @Test
  void anOldIncarnationServingAfterANewerOneAnsweredIsStale() {
    exec("a", 0, 10, "a", 2, "va");
    exec("a", 11, 20, "a", 1, "va");
    exec("b", 0, 10, "b", 3, "vb");
    exec("b", 10, 20, "b", 3, "vb"); // equal incarnation: fine
    Result r = check();
    assertOnly(Kind.STALE_INCARNATION, 1, r);
    assertEquals("a", r.violations().get(0).sandboxId());
  }

  @Test
  void theFloorIsTheHighestIncarnationThatHadAnsweredNotTheLast() {
    exec("a", 0, 10, "a", 3, "va");
    exec("a", 5, 12, "a", 2, "va"); // overlapped incarnation 3's exec: allowed
    exec("a", 15, 20, "a", 2, "va"); // both had ended: 3 is the floor
    assertOnly(Kind.STALE_INCARNATION, 1, check());
  }

  @Test
  void notFoundOfAnAcknowledgedSandboxAfterTheBoundIsALoss() {
    faults.add(new Fault("rolling restart", ms(0), ms(1_000)));
    failed("exec", "a", 1_000 + 60_001, 1_000 + 60_010, Outcome.FAILED, "NOT_FOUND");
    Result r = check();
    assertOnly(Kind.NOT_FOUND_AFTER_BOUND, 1, r);
  }

  @Test
  void notFoundWithNoFaultAtAllIsALoss() {
    failed("exec", "b", 10, 20, Outcome.FAILED, "NOT_FOUND");
    assertOnly(Kind.NOT_FOUND_AFTER_BOUND, 1, check());
  }

  @Test
  void theFirstDeleteAnsweredNotFoundIsALoss() {
    failed("delete", "a", 10, 20, Outcome.FAILED, "NOT_FOUND");
    assertOnly(Kind.NOT_FOUND_AFTER_BOUND, 1, check());
  }

  @Test
  void aDeleteRefusedForAnotherReasonDoesNotExcuseNotFound() {
    failed("delete", "a", 10, 20, Outcome.FAILED, "FAILED_PRECONDITION");
    failed("exec", "a", 30, 40, Outcome.FAILED, "NOT_FOUND");
    assertOnly(Kind.NOT_FOUND_AFTER_BOUND, 1, check());
  }

  @Test
  void notFoundBeforeTheCreateWasAcknowledgedIsNotALoss() {
    Map<String, Expected> late = Map.of("a", new Expected("va", ms(1_000)));
    failed("exec", "a", 10, 20, Outcome.FAILED, "NOT_FOUND");
    assertTrue(checker.check(ops, faults, late).violations().isEmpty());
    failed("exec", "a", 1_010, 1_020, Outcome.FAILED, "NOT_FOUND");
    assertOnly(Kind.NOT_FOUND_AFTER_BOUND, 1, checker.check(ops, faults, late));
  }
}
