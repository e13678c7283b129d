package dev.flotilla.sandbox;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Executor;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Stops VMs on this host that no sandbox owns any more: their sandbox was deleted, or moved on
 * to a newer incarnation (restarted elsewhere while this node was down), or is stopped. A VM of
 * a sandbox's current incarnation is left to the sandbox, which re-attaches to it.
 *
 * <p>Runs when the node starts and then periodically. Blocking work (process checks, kills) runs
 * on the given executor, never on an actor thread.
 */
public final class VmReaper {
  private static final Logger log = LoggerFactory.getLogger(VmReaper.class);

  private final ActorSystem<?> system;
  private final SandboxRuntime runtime;
  private final Executor blocking;
  private final Duration askTimeout;
  private final JournalStatus journal;

  public VmReaper(ActorSystem<?> system, SandboxRuntime runtime, Executor blocking, Duration askTimeout) {
    this(system, runtime, blocking, askTimeout, JournalStatus.ALWAYS_AVAILABLE);
  }

  public VmReaper(ActorSystem<?> system, SandboxRuntime runtime, Executor blocking, Duration askTimeout, JournalStatus journal) {
    this.system = system;
    this.runtime = runtime;
    this.blocking = blocking;
    this.askTimeout = askTimeout;
    this.journal = journal;
  }

  /** One pass over this node's VM directory; skipped while the journal is down. */
  public void reapOnce() {
    var down = journal.unavailable();
    if (down.isPresent()) {
      // Asking a sandbox that is not in memory would start it, and its shard, unable to record
      // that in the journal, would stop with every sandbox in it. Nothing here is urgent.
      log.info("VM reaper pass skipped: the journal is unavailable ({})", down.get());
      return;
    }
    java.util.Set<String> withVms = new java.util.HashSet<>();
    for (VmDirectory.Entry e : new VmDirectory(runtime.vmRoot()).list()) {
      if (e.readable()) withVms.add(e.handle().sandboxId());
    }
    releaseGone(withVms);
    sweepSnapshots();
    for (VmDirectory.Entry e : new VmDirectory(runtime.vmRoot()).list()) {
      if (!e.readable()) continue;
      VmHandle h = e.handle();
      Hypervisor hv = runtime.drivers().get(h.driver());
      if (hv == null) continue;
      inspect(h.sandboxId()).whenCompleteAsync((i, err) -> {
        if (err != null) return; // cluster busy or sandbox unreachable: next pass
        String why = reason(i, h);
        if (why == null) return;
        hv.adopt(h).ifPresentOrElse(vm -> {
          log.info("reaping VM of sandbox {} incarnation {} ({})", h.sandboxId(), h.incarnation(), why);
          vm.stop(runtime.stopGrace());
          vm.destroy();
        }, () -> deleteDir(runtime, h));
      }, blocking);
    }
  }

  /**
   * Frees what drivers keep per sandbox beyond its VMs (a writable layer, an id range), and its
   * main process's log, once the
   * sandbox is deleted or its VM runs on another host. A sandbox with a VM directory here is left to
   * the pass over VMs; one whose VM is not placed yet (no host) keeps its state.
   */
  private void releaseGone(java.util.Set<String> withVms) {
    for (Hypervisor hv : runtime.drivers().values()) {
      for (String id : hv.sandboxesWithLocalState()) {
        releaseIfGone(id, withVms, () -> hv.releaseSandbox(id));
      }
    }
    if (runtime.mainLogs() == null) return;
    try {
      for (String id : runtime.mainLogs().sandboxes()) {
        releaseIfGone(id, withVms, () -> {
          try {
            runtime.mainLogs().remove(id);
          } catch (java.io.IOException e) {
            log.warn("cannot remove the main log of sandbox {}: {}", id, e.getMessage());
          }
        });
      }
    } catch (java.io.IOException e) {
      log.warn("cannot list the main logs: {}", e.getMessage());
    }
  }

  private void releaseIfGone(String id, java.util.Set<String> withVms, Runnable release) {
    if (withVms.contains(id) || !SandboxIds.isValid(id)) return;
    inspect(id).whenCompleteAsync((i, err) -> {
      if (err != null) return;
      String why = releaseReason(i, runtime.hostId());
      if (why == null) return;
      log.info("releasing the node-local state of sandbox {} ({})", id, why);
      release.run();
    }, blocking);
  }

  /**
   * A snapshot directory nobody resumes from: its sandbox's entity records another one (or none),
   * or is gone. Normally its entity removes it (after the resumed VM runs, on a stop or delete); this
   * catches what a node crash in between left. A directory younger than {@link #SNAPSHOT_GRACE} is
   * left alone: a suspend may be writing it, or a fork's create be on its way. With a shared store
   * every node sweeps it; the verdict is the entity's either way.
   */
  private void sweepSnapshots() {
    SnapshotStore store = runtime.snapshots();
    if (store == null) return;
    java.util.List<SnapshotStore.Entry> entries;
    try {
      entries = store.list();
    } catch (IOException e) {
      log.warn("cannot list the snapshot store {}: {}", store.root(), e.getMessage());
      return;
    }
    java.time.Instant now = java.time.Instant.now();
    for (SnapshotStore.Entry e : entries) {
      if (e.modified().plus(SNAPSHOT_GRACE).isAfter(now)) continue;
      inspect(e.sandboxId()).whenCompleteAsync((i, err) -> {
        String why = err != null ? null : snapshotReason(i, e.dir());
        if (why == null) return;
        log.info("removing snapshot {}: sandbox {} {}", e.dir(), e.sandboxId(), why);
        try {
          store.discard(e.dir().toString());
        } catch (IOException x) {
          log.warn("cannot remove snapshot {}: {}", e.dir(), x.getMessage());
        }
      }, blocking);
    }
  }

  /** Why a snapshot directory (old enough) must go, or null while its sandbox records it. */
  static String snapshotReason(SandboxEntity.Inspection i, Path dir) {
    if (!i.exists()) return "does not exist";
    if (dir.toString().equals(i.snapshot())) return null;
    return "does not resume from it (it is " + i.phase() + " at incarnation " + i.incarnation() + ")";
  }

  /** Longer than a suspend or a fork may take (SandboxEntity's SUSPEND_TIMEOUT and the API's asks). */
  static final Duration SNAPSHOT_GRACE = Duration.ofMinutes(15);

  /** Why a sandbox's node-local state may go, or null if it may still need it here. */
  static String releaseReason(SandboxEntity.Inspection i, String thisHost) {
    if (!i.exists()) return "sandbox deleted";
    if (i.hostId() != null && !i.hostId().isEmpty() && !i.hostId().equals(thisHost)) return "sandbox runs on host " + i.hostId();
    return null;
  }

  /** Why this VM must go, or null if its sandbox may still own it. */
  static String reason(SandboxEntity.Inspection i, VmHandle h) {
    if (!i.exists()) return "sandbox deleted";
    if (i.incarnation() > h.incarnation()) return "sandbox is at incarnation " + i.incarnation();
    if (i.incarnation() == h.incarnation() && (i.phase() == Phase.STOPPED || i.phase() == Phase.FAILED)) {
      return "sandbox is " + i.phase();
    }
    return null;
  }

  private CompletionStage<SandboxEntity.Inspection> inspect(String sandboxId) {
    if (!SandboxIds.isValid(sandboxId)) {
      return java.util.concurrent.CompletableFuture.failedFuture(new IllegalArgumentException("not a sandbox id: " + sandboxId));
    }
    return ClusterSharding.get(system).entityRefFor(SandboxEntity.ENTITY_KEY, sandboxId)
        .ask(SandboxEntity.Inspect::new, askTimeout);
  }

  /**
   * The VM is gone already: its leftover state directory goes too. Which directory is derived
   * here from the sandbox id and incarnation, never taken from the handle (a file in a directory
   * the sandbox may have been able to write), and deleted without following any link in it.
   */
  static void deleteDir(SandboxRuntime runtime, VmHandle h) {
    if (!SandboxIds.isValid(h.sandboxId()) || h.incarnation() <= 0) {
      log.warn("not deleting the state of a VM handle naming sandbox '{}' incarnation {}: not a valid sandbox", h.sandboxId(), h.incarnation());
      return;
    }
    Path root = runtime.vmRoot().toAbsolutePath().normalize();
    Path dir = runtime.vmStateDir(h.sandboxId(), h.incarnation()).toAbsolutePath().normalize();
    try {
      NodeOnlyFiles.requireUnder(root, dir);
      NodeOnlyFiles.deleteTree(dir);
    } catch (IOException e) {
      log.warn("cannot delete the state directory {} of sandbox {} incarnation {}: {}", dir, h.sandboxId(), h.incarnation(), e.getMessage());
    }
  }

  /** Runs {@link #reapOnce()} now and every {@code interval}. */
  public void schedule(Duration first, Duration interval) {
    system.scheduler().scheduleWithFixedDelay(first, interval, this::reapOnce, system.executionContext());
  }
}
