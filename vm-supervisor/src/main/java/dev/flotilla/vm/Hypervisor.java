package dev.flotilla.vm;

import java.util.Optional;

/**
 * One sandbox runtime (a "VMM" in Kata's words): the process driver, QEMU, later Firecracker.
 *
 * <p>Modelled on Kata runtime-rs' {@code Hypervisor} trait, split in two: this factory, which
 * knows the driver and the host, and {@link Vm}, one running instance. Implementations block
 * (they spawn processes and wait on sockets), so callers run them on a blocking dispatcher,
 * never on an actor thread.
 */
public interface Hypervisor {

  /** The driver name users put in a sandbox spec: {@code process}, {@code qemu}. */
  String driver();

  /** What this driver can do on this host, including limits it cannot enforce here. */
  HypervisorCapabilities capabilities();

  /**
   * Creates the VM's state directory and everything needed to start it; nothing runs yet.
   *
   * @throws VmException if the spec cannot be run by this driver on this host
   */
  Vm prepare(VmSpec spec) throws VmException;

  /**
   * Re-attaches to a VM started earlier, possibly by another JVM on this host, from its saved
   * handle. Returns empty when the VM is gone or is not the one the handle names (pid reused,
   * other start time). The agent handshake, which checks sandbox id and incarnation, is the
   * caller's job: the driver only vouches for the process.
   */
  Optional<Vm> adopt(VmHandle handle);
}
