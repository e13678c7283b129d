package dev.flotilla.vm;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The door every VM of a driver is spawned through, closed for good when the cluster downs the
 * node. A spawn holds the gate from before its process exists until its {@link VmHandle} is saved,
 * so once {@link #close} returns no VM can start on this node any more, and every VM that started
 * before has a handle the fencing finds in the {@link VmDirectory}. Without it, a start in flight
 * when the node was frozen could spawn its VM after the fencing had listed the node's VMs, and that
 * VM ran beside its successor elsewhere until its lease ended (seen by ChaosIT's SIGSTOP fault).
 */
public final class SpawnGate {
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private volatile boolean closed;
  private volatile FreezeWatch freezes;

  /**
   * Also refuse every spawn while {@code watch} says this JVM is not {@link FreezeWatch#fresh()
   * fresh}: a node thawed after a freeze long enough for its cluster to have started its
   * sandboxes elsewhere starts no VM, even before it knows whether it was downed.
   */
  public void watch(FreezeWatch watch) {
    this.freezes = watch;
  }

  /** Work that spawns a VM process and saves its handle. */
  @FunctionalInterface
  public interface Spawn<T> {
    T run() throws VmException;
  }

  /**
   * Runs {@code spawn} unless the gate is closed; {@link #close} waits for it to finish.
   *
   * @throws VmException when the node is fenced, or whatever {@code spawn} throws
   */
  public <T> T through(String sandboxId, Spawn<T> spawn) throws VmException {
    refuseIfClosed(sandboxId); // before the lock too: a closing gate's waiting writer would queue this spawn
    lock.readLock().lock();
    try {
      refuseIfClosed(sandboxId);
      return spawn.run();
    } finally {
      lock.readLock().unlock();
    }
  }

  private void refuseIfClosed(String sandboxId) throws VmException {
    if (closed) {
      throw new VmException("sandbox " + sandboxId + ": this node was downed by its cluster and starts no VM any more;"
          + " the sandbox starts on another node");
    }
    FreezeWatch w = freezes;
    if (w != null && !w.fresh()) {
      String why = w.why();
      throw new VmException("sandbox " + sandboxId + ": " + (why.isEmpty() ? "this node was frozen" : why)
          + "; it starts no VM until it knows it still holds its sandboxes");
    }
  }

  /**
   * Closes the gate for good, after the spawns in progress finished (at most {@code wait}).
   *
   * @return false when a spawn still held the gate after {@code wait}: the caller cannot count on
   *     its VM having a handle yet
   */
  public boolean close(Duration wait) {
    closed = true;
    boolean quiet = false;
    try {
      quiet = lock.writeLock().tryLock(wait.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (quiet) lock.writeLock().unlock();
    return quiet;
  }

  public boolean closed() {
    return closed;
  }
}
