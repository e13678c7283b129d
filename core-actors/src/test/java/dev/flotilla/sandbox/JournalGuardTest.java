package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.sandbox.protocol.SandboxError;
import java.time.Duration;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The fail-fast rules of the control plane while the journal is down, without a cluster. */
class JournalGuardTest {
  static final Duration READ_TIMEOUT = Duration.ofMillis(300);

  /** A journal whose health the test sets. */
  static final class FakeJournal implements JournalStatus {
    volatile String down;
    final Set<Consumer<String>> listeners = ConcurrentHashMap.newKeySet();

    @Override
    public Optional<String> unavailable() {
      return Optional.ofNullable(down);
    }

    @Override
    public Runnable onDown(Consumer<String> onDown) {
      listeners.add(onDown);
      if (down != null) onDown.accept(down);
      return () -> listeners.remove(onDown);
    }

    void goDown(String why) {
      down = why;
      listeners.forEach(l -> l.accept(why));
    }
  }

  final FakeJournal journal = new FakeJournal();
  final ScheduledExecutorService scheduler = Executors.newSingleThreadScheduledExecutor();
  final JournalGuard guard = new JournalGuard(journal, (delay, task) -> {
    var f = scheduler.schedule(task, delay.toMillis(), TimeUnit.MILLISECONDS);
    return () -> f.cancel(false);
  }, READ_TIMEOUT);
  final AtomicInteger sent = new AtomicInteger();

  @AfterEach
  void stop() {
    scheduler.shutdownNow();
  }

  /** An entity that never answers (it needs the journal to recover, or its write hangs). */
  <T> CompletionStage<T> neverAnswers() {
    sent.incrementAndGet();
    return new CompletableFuture<>();
  }

  /**
   * How many journal listeners a caller that waits on {@code call} sees when it ends. Registered
   * after the guard's own dependents, so it runs before them (a CompletableFuture runs its
   * dependents last first): a listener let go of only in such a dependent is still there.
   */
  CompletableFuture<Integer> listenersWhenDone(CompletionStage<?> call) {
    return call.toCompletableFuture().handle((v, e) -> journal.listeners.size());
  }

  static SandboxError failureOf(CompletionStage<?> stage) throws Exception {
    var e = assertThrows(ExecutionException.class, () -> stage.toCompletableFuture().get(5, TimeUnit.SECONDS));
    return SandboxControl.unwrap(e);
  }

  @Test
  void aChangeWhileTheJournalIsDownIsRefusedWithoutBeingSent() throws Exception {
    journal.goDown("PostgreSQL at db:5432: connection refused, for 1.2 s");
    SandboxError e = failureOf(guard.change(this::neverAnswers));
    assertEquals(SandboxError.Kind.UNAVAILABLE, e.kind());
    assertEquals("the sandbox journal is unreachable (PostgreSQL at db:5432: connection refused, for 1.2 s);"
        + " nothing was changed; retry when it is back", e.getMessage());
    assertEquals(0, sent.get());
    assertTrue(journal.listeners.isEmpty(), "no listener left behind");
  }

  @Test
  void aChangeUnderWayEndsAsSoonAsTheJournalGoesDown() throws Exception {
    var call = guard.change(this::neverAnswers);
    assertEquals(1, sent.get());
    assertFalse(call.toCompletableFuture().isDone());
    var listenersSeenWhenDone = listenersWhenDone(call);
    journal.goDown("PostgreSQL at db:5432: connection refused, for 0.0 s");
    SandboxError e = failureOf(call);
    assertEquals(0, listenersSeenWhenDone.get(5, TimeUnit.SECONDS), "the listener let go of before the call ends");
    assertEquals(SandboxError.Kind.UNAVAILABLE, e.kind());
    assertTrue(e.getMessage().contains("became unreachable while this request was under way")
        && e.getMessage().contains("unknown") && e.getMessage().contains("same request id"), e.getMessage());
    assertTrue(journal.listeners.isEmpty(), "no listener left behind");
  }

  @Test
  void aLaterStepOfAChangeIsNotSentOnceTheJournalIsDown() throws Exception {
    var call = guard.change(() -> CompletableFuture.completedFuture("reserved")
        .thenCompose(r -> {
          journal.goDown("gone");
          return guard.nextStep(this::neverAnswers);
        }));
    assertTrue(failureOf(call).getMessage().contains("under way"));
    assertEquals(0, sent.get());
  }

  @Test
  void answersAndErrorsPassThroughWhileTheJournalIsUp() throws Exception {
    assertEquals("ok", guard.change(() -> CompletableFuture.completedFuture("ok")).toCompletableFuture().get());
    assertEquals("ok", guard.read(() -> CompletableFuture.completedFuture("ok")).toCompletableFuture().get());
    SandboxError notFound = SandboxError.notFound("sb-0000000000000000");
    assertEquals(SandboxError.Kind.NOT_FOUND, failureOf(guard.change(() -> CompletableFuture.failedFuture(notFound))).kind());
    assertTrue(journal.listeners.isEmpty(), "no listener left behind");
  }

  @Test
  void aReadIsSentWhileTheJournalIsDownAndAnAnswerWins() throws Exception {
    journal.goDown("gone");
    assertEquals("running", guard.read(() -> CompletableFuture.completedFuture("running")).toCompletableFuture().get());
    var late = new CompletableFuture<String>();
    var call = guard.read(() -> late);
    late.complete("answered in time");
    assertEquals("answered in time", call.toCompletableFuture().get());
  }

  @Test
  void aReadThatNeedsTheDeadJournalEndsAfterTheReadTimeoutNotTheAskTimeout() throws Exception {
    journal.goDown("PostgreSQL at db:5432: connection refused, for 4.0 s");
    long t0 = System.nanoTime();
    var call = guard.read(this::neverAnswers);
    var listenersSeenWhenDone = listenersWhenDone(call);
    SandboxError e = failureOf(call);
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertEquals(1, sent.get(), "reads are sent: a sandbox in memory answers them");
    assertEquals(SandboxError.Kind.UNAVAILABLE, e.kind());
    assertTrue(e.getMessage().startsWith("no answer within 0.3 s while the sandbox journal is unreachable (PostgreSQL"),
        e.getMessage());
    assertTrue(ms >= READ_TIMEOUT.toMillis(), ms + " ms");
    assertEquals(0, listenersSeenWhenDone.get(5, TimeUnit.SECONDS), "the listener let go of before the call ends");
    assertTrue(journal.listeners.isEmpty(), "no listener left behind");
  }

  @Test
  void aReadUnderWayGetsTheReadTimeoutFromWhenTheJournalGoesDown() throws Exception {
    var call = guard.read(this::neverAnswers);
    assertFalse(call.toCompletableFuture().isDone());
    journal.goDown("gone");
    assertEquals(SandboxError.Kind.UNAVAILABLE, failureOf(call).kind());
  }
}
