package dev.flotilla.sandbox;

import dev.flotilla.sandbox.SandboxEntity.Created;
import dev.flotilla.sandbox.SandboxEntity.DeleteRequested;
import dev.flotilla.sandbox.SandboxEntity.Deleted;
import dev.flotilla.sandbox.SandboxEntity.Paused;
import dev.flotilla.sandbox.SandboxEntity.Resumed;
import dev.flotilla.sandbox.SandboxEntity.SandboxFailed;
import dev.flotilla.sandbox.SandboxEntity.StartRequested;
import dev.flotilla.sandbox.SandboxEntity.StopRequested;
import dev.flotilla.sandbox.SandboxEntity.VmEnded;
import dev.flotilla.sandbox.SandboxEntity.VmStartRequested;
import dev.flotilla.sandbox.SandboxEntity.VmStarted;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.persistence.query.EventEnvelope;
import org.apache.pekko.persistence.query.javadsl.CurrentEventsByPersistenceIdQuery;
import org.apache.pekko.stream.javadsl.Sink;

/**
 * A sandbox's recorded history, read from the journal, oldest first: what {@code flotilla events}
 * shows. It never asks the sandbox's entity, so reading an unknown id starts nothing, and a deleted
 * sandbox's history stays readable by its tenant (the tombstone answers every other call
 * NOT_FOUND). The tenant is the one its first event (Created) names; anyone else gets NOT_FOUND.
 */
public final class SandboxHistory {

  /** Entries per page when the caller names none, and the most one page may hold. */
  public static final int DEFAULT_PAGE = 100;
  public static final int MAX_PAGE = 1000;

  /**
   * One recorded change.
   *
   * @param sequence its place in the sandbox's journal, from 1
   * @param kind a stable word for scripts: created, vm-starting, vm-started, vm-reattached,
   *     vm-exited, restarting, moved, paused, resumed, stop-requested, start-requested,
   *     delete-requested, deleted, failed, resized
   * @param incarnation the incarnation it concerns, 0 when none
   * @param node the cluster node it concerns (host:port), empty when none
   * @param description the change, for people
   */
  public record Entry(long sequence, Instant at, String kind, long incarnation, String node, String description) {}

  /** @param nextSequence where the next page starts; 0 after the last page */
  public record Page(List<Entry> entries, long nextSequence) {}

  private final ActorSystem<?> system;
  private final CurrentEventsByPersistenceIdQuery journal;

  public SandboxHistory(ActorSystem<?> system, CurrentEventsByPersistenceIdQuery journal) {
    this.system = system;
    this.journal = journal;
  }

  /** Up to {@code size} entries from {@code fromSequence} (1: the beginning). */
  public CompletionStage<Page> read(String tenant, String id, long fromSequence, int size) {
    if (fromSequence < 1) return CompletableFuture.failedFuture(SandboxError.invalid("the page token is not one this API gave out"));
    int n = size <= 0 ? DEFAULT_PAGE : size;
    if (n > MAX_PAGE) return CompletableFuture.failedFuture(SandboxError.invalid("page size must be at most " + MAX_PAGE));
    String pid = SandboxEntity.ENTITY_KEY.name() + "|" + id;
    return events(pid, 1, 1).thenCompose(first -> {
      if (first.isEmpty() || !(first.get(0).event() instanceof Created c) || !c.tenant().equals(tenant)) {
        throw new CompletionException(SandboxError.notFound(id));
      }
      long to = fromSequence + n; // one more than asked: it tells whether there is a next page
      return events(pid, fromSequence, to).thenApply(envelopes -> {
        List<Entry> entries = envelopes.stream().limit(n).map(SandboxHistory::entry).toList();
        long next = envelopes.size() > n ? envelopes.get(n).sequenceNr() : 0;
        return new Page(entries, next);
      });
    });
  }

  private CompletionStage<List<EventEnvelope>> events(String pid, long from, long to) {
    return journal.currentEventsByPersistenceId(pid, from, to).runWith(Sink.seq(), system);
  }

  static Entry entry(EventEnvelope e) {
    return describe(e.sequenceNr(), e.event());
  }

  private static String mib(long bytes) {
    return String.format(java.util.Locale.ROOT, "%.1f MiB", bytes / (1024.0 * 1024.0));
  }

  /** Pure: a journaled event as people and scripts read it. */
  static Entry describe(long seq, Object event) {
    if (event instanceof Created c) {
      String what = c.spec().image().isEmpty() ? "" : " from image " + c.spec().image();
      return new Entry(seq, c.at(), "created", 0, "", "created" + what + " (driver " + c.spec().driver()
          + (c.requestId() == null || c.requestId().isEmpty() ? "" : ", request id " + c.requestId()) + ")");
    }
    if (event instanceof SandboxEntity.Resized r) {
      return new Entry(seq, r.at(), "resized", 0, "", "resized in place to " + r.vcpus() + " vCPU" + (r.vcpus() == 1 ? "" : "s")
          + " and " + r.memoryMiB() + " MiB (from " + r.fromVcpus() + " and " + r.fromMemoryMiB() + " MiB)");
    }
    if (event instanceof VmStartRequested r) {
      String reason = r.reason();
      if (reason.startsWith("moved here: ")) {
        return new Entry(seq, r.at(), "moved", r.incarnation(), r.node(), "moved to node " + r.node()
            + " as incarnation " + r.incarnation() + " after " + reason.substring("moved here: ".length()));
      }
      if (reason.startsWith("restart ")) {
        return new Entry(seq, r.at(), "restarting", r.incarnation(), r.node(), "restarting as incarnation "
            + r.incarnation() + " on node " + r.node() + ": " + reason);
      }
      return new Entry(seq, r.at(), "vm-starting", r.incarnation(), r.node(), "starting incarnation "
          + r.incarnation() + " on node " + r.node() + " (" + reason + ")");
    }
    if (event instanceof VmStarted v) {
      VmLocation loc = v.location();
      return v.adopted()
          ? new Entry(seq, v.at(), "vm-reattached", v.incarnation(), loc.node(), "node " + loc.node()
              + " re-attached to the running VM of incarnation " + v.incarnation() + " (host " + loc.hostId() + ")")
          : new Entry(seq, v.at(), "vm-started", v.incarnation(), loc.node(), "VM started on node " + loc.node()
              + " (host " + loc.hostId() + ") as incarnation " + v.incarnation());
    }
    if (event instanceof VmEnded v) {
      VmEnd end = v.end();
      String status = end.signal() != 0 ? "killed by signal " + end.signal()
          : end.exitCode() >= 0 ? "exited with status " + end.exitCode() : "ended";
      return new Entry(seq, v.at(), "vm-exited", v.incarnation(), "", "incarnation " + v.incarnation() + " " + status
          + (end.requested() ? ", as requested" : "") + (end.reason().isEmpty() ? "" : ": " + end.reason()));
    }
    if (event instanceof SandboxEntity.Suspended u) {
      return new Entry(seq, u.at(), "suspended", u.incarnation(), "", "incarnation " + u.incarnation() + " suspended into "
          + u.snapshot() + (u.memory() ? " with its memory (" + mib(u.stateBytes()) + " of state, " : " without its memory (")
          + mib(u.diskBytes()) + " of disk)");
    }
    if (event instanceof Paused p) return new Entry(seq, p.at(), "paused", 0, "", "paused");
    if (event instanceof Resumed r) return new Entry(seq, r.at(), "resumed", 0, "", "resumed");
    if (event instanceof StopRequested r) return new Entry(seq, r.at(), "stop-requested", 0, "", "stop requested");
    if (event instanceof StartRequested r) return new Entry(seq, r.at(), "start-requested", 0, "", "start requested");
    if (event instanceof DeleteRequested r) return new Entry(seq, r.at(), "delete-requested", 0, "", "delete requested");
    if (event instanceof Deleted d) return new Entry(seq, d.at(), "deleted", 0, "", "deleted");
    if (event instanceof SandboxFailed f) return new Entry(seq, f.at(), "failed", 0, "", "failed: " + f.reason());
    if (event instanceof SandboxEntity.TimeoutSet t) {
      return new Entry(seq, t.at(), "timeout-set", 0, "", t.deadline() == null ? "timeout removed" : "timeout set: ends at " + t.deadline());
    }
    if (event instanceof SandboxEntity.TimedOut t) {
      return new Entry(seq, t.at(), "timed-out", 0, "", t.idle() ? "idle for its idle timeout" : "its timeout ran out");
    }
    // An event this node's code does not know (a newer node wrote it): shown, not hidden.
    return new Entry(seq, Instant.EPOCH, "unknown", 0, "", "an event this node does not know: "
        + (event == null ? "null" : event.getClass().getSimpleName()));
  }
}
