package dev.flotilla.sandbox;

import dev.flotilla.sandbox.protocol.SandboxError;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;

/**
 * Keeps API calls from waiting out the ask timeout while the journal is down. A change needs the
 * journal: it is refused at once while the journal is unavailable, and one under way ends as soon
 * as the journal is known to be gone (its outcome is then unknown). A read does not: a sandbox in
 * memory answers without the journal, so reads are sent anyway; but one that needs the journal
 * (an entity to recover from it) would wait out the ask timeout, so while the journal is down a
 * read gets {@code readTimeout} to answer.
 */
final class JournalGuard {

  /** Runs a task after a delay; the returned handle cancels it. */
  @FunctionalInterface
  interface Timer {
    Runnable after(Duration delay, Runnable task);
  }

  private final JournalStatus journal;
  private final Timer timer;
  private final Duration readTimeout;

  JournalGuard(JournalStatus journal, Timer timer, Duration readTimeout) {
    this.journal = journal;
    this.timer = timer;
    this.readTimeout = readTimeout;
  }

  /** A call that persists: refused while the journal is down, ended when it goes down. */
  <R> CompletionStage<R> change(Supplier<? extends CompletionStage<R>> call) {
    Guarded<R> g = new Guarded<>();
    AtomicBoolean sent = new AtomicBoolean();
    g.onEnd(journal.onDown(why -> g.end(null, sent.get() ? outcomeUnknown(why) : refused(why))));
    if (!g.ended()) {
      sent.set(true);
      if (!g.ended()) pipe(call, g);
    }
    return g.result;
  }

  /**
   * A later step of a change (after a first one was sent): skipped while the journal is down, the
   * caller's {@link #change} then ends with "outcome unknown".
   */
  <R> CompletionStage<R> nextStep(Supplier<? extends CompletionStage<R>> call) {
    var down = journal.unavailable();
    if (down.isPresent()) return CompletableFuture.failedFuture(outcomeUnknown(down.get()));
    return call.get();
  }

  /** A call that an entity in memory answers without the journal. */
  <R> CompletionStage<R> read(Supplier<? extends CompletionStage<R>> call) {
    Guarded<R> g = new Guarded<>();
    AtomicReference<Runnable> deadline = new AtomicReference<>();
    g.onEnd(journal.onDown(why -> {
      if (deadline.get() != null || g.ended()) return;
      Runnable cancel = timer.after(readTimeout, () -> g.end(null, noAnswer(journal.unavailable().orElse(why))));
      if (deadline.compareAndSet(null, cancel)) g.onEnd(cancel);
      else cancel.run();
    }));
    pipe(call, g);
    return g.result;
  }

  /**
   * One guarded call. It lets go of what it holds (its journal listener, its read deadline)
   * before its result completes, so whoever sees the result sees them gone: a dependent of the
   * result (a waiting {@code get()} among them) may run before any other dependent registered
   * earlier. The releases may run more than once; each must be idempotent.
   */
  private static final class Guarded<R> {
    final CompletableFuture<R> result = new CompletableFuture<>();
    private final AtomicBoolean ended = new AtomicBoolean();
    private final List<Runnable> releases = new CopyOnWriteArrayList<>();

    boolean ended() {
      return ended.get();
    }

    /** Runs {@code release} when the call ends, or now if it has. */
    void onEnd(Runnable release) {
      releases.add(release);
      if (ended.get()) release.run();
    }

    /** The first end wins: releases first, then the result. */
    void end(R value, Throwable failure) {
      if (!ended.compareAndSet(false, true)) return;
      releases.forEach(Runnable::run);
      if (failure != null) result.completeExceptionally(failure);
      else result.complete(value);
    }
  }

  private static <R> void pipe(Supplier<? extends CompletionStage<R>> call, Guarded<R> into) {
    CompletionStage<R> stage;
    try {
      stage = call.get();
    } catch (RuntimeException e) {
      into.end(null, e);
      return;
    }
    stage.whenComplete(into::end);
  }

  static SandboxError refused(String why) {
    return new SandboxError(SandboxError.Kind.UNAVAILABLE,
        "the sandbox journal is unreachable (" + why + "); nothing was changed; retry when it is back");
  }

  static SandboxError outcomeUnknown(String why) {
    return new SandboxError(SandboxError.Kind.UNAVAILABLE,
        "the sandbox journal became unreachable while this request was under way (" + why + "); whether it took"
            + " effect is unknown; the request may be retried when the journal is back (a create with the same"
            + " request id is safe to repeat)");
  }

  SandboxError noAnswer(String why) {
    return new SandboxError(SandboxError.Kind.UNAVAILABLE,
        "no answer within " + String.format(Locale.ROOT, "%.1f s", readTimeout.toMillis() / 1000.0)
            + " while the sandbox journal is unreachable (" + why + "): the sandbox is probably being recovered"
            + " from the journal; the request may be retried when the journal is back");
  }
}
