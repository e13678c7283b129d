package dev.flotilla.vm;

import dev.flotilla.agent.protocol.client.AgentAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * One VM (or isolated process tree) of one sandbox incarnation. Blocking; thread-safe.
 */
public interface Vm {

  /** The handle that lets a later node re-attach; complete (pid, start time) once started. */
  VmHandle handle();

  /**
   * Starts the VM and returns once its agent endpoint exists (the agent may still be booting:
   * the caller connects with its own retry and deadline).
   *
   * @throws VmException if it did not start within the deadline; nothing is left running then
   */
  void start(Duration deadline) throws VmException;

  /**
   * Where the host reaches the guest agent, and how it knows it is the agent this driver started:
   * the uid that must hold the socket (when the driver knows it) and the incarnation's secret
   * (see {@link AgentSecrets}; after an adopt, read back from the node-only state directory). The
   * supervisor connects and handshakes with exactly this. May read node-only files: call it off
   * actor threads.
   */
  AgentAddress agentAddress();

  /** Freezes every process (or vCPU) of the VM. Idempotent. */
  void pause() throws VmException;

  /** Undoes {@link #pause()}. Idempotent. */
  void resume() throws VmException;

  /**
   * Changes the running VM's resources in place, without a restart: {@code vcpus} and
   * {@code memoryMiB} are the new totals (unchanged ones included). A driver refuses, with a
   * VmException that says why, whatever it cannot change live: nothing is ever left to apply at the
   * next start. Blocking.
   */
  default void resize(int vcpus, int memoryMiB) throws VmException {
    throw new VmException("this driver cannot change a running sandbox's resources");
  }

  /**
   * Saves the VM's complete state (memory, devices, writable disk and whatever else its restore
   * needs) into {@code dir}, a new node-only directory, then ends the VM: it holds no memory any
   * more, and {@link VmSpec#RESTORE_FROM} starts it again exactly where it was. Blocking.
   *
   * <p>Contract: before the call, the caller has handshaken the agent with {@code pausing} true
   * (as for {@link #pause()}) and closed its connections: the guest's lease then restarts once when
   * the restored VM thaws, instead of counting the time it was saved as time the node was gone.
   *
   * <p>A driver that cannot save memory may keep only the writable disk ({@link Snapshot#memory()}
   * false: the process driver without CRIU): the VM's processes end, and its restore boots afresh
   * on that disk.
   *
   * @throws VmException if it cannot; the VM then still runs unless the message says otherwise
   */
  default Snapshot suspend(java.nio.file.Path dir) throws VmException {
    throw new VmException("this driver cannot suspend a sandbox with its memory");
  }

  /**
   * As {@link #suspend}, but the VM goes on running after the save: the source of a fork. The
   * guest is stopped only while its state and writable disk are saved ({@link Snapshot#pausedMillis()}).
   * The same contract: the caller announced the pause ({@code pausing} true) and, once this returns,
   * withdraws it with a plain handshake.
   */
  default Snapshot snapshot(java.nio.file.Path dir) throws VmException {
    throw new VmException("this driver cannot snapshot a running sandbox");
  }

  /** Whether the VM is frozen now (by {@link #pause()}, possibly from an earlier JVM): a frozen agent answers nothing. */
  boolean isPaused() throws VmException;

  /**
   * Stops the VM: a polite request first, then a kill after {@code grace}. Returns once the VM
   * has exited. Idempotent; a VM that has already exited returns at once.
   */
  void stop(Duration grace);

  /** Kills the VM at once (SIGKILL of the whole process group / QEMU). Does not wait. */
  void kill();

  /** Completes when the VM exits, for whatever reason, including ones this object did not cause. */
  CompletableFuture<VmExit> exitFuture();

  /** Host pids of the VM's processes (the QEMU process, or the sandbox's process tree). */
  List<Long> pids();

  /** Removes the VM's state directory. Only after the VM has exited. */
  void destroy();
}
