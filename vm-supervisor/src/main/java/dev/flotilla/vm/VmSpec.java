package dev.flotilla.vm;

import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;

/**
 * What to run: resources and identity of one sandbox incarnation.
 *
 * @param sandboxId the sandbox this VM belongs to
 * @param incarnation bumped each time a new VM is started for the sandbox; the agent refuses a
 *     host that names another one (fencing)
 * @param vcpus virtual CPUs (a CPU quota for the process driver)
 * @param memoryMiB memory limit in MiB
 * @param pidsLimit maximum number of processes, 0 for the driver's default
 * @param stateDir this VM's own directory (handle, sockets, logs); created by {@code prepare}
 * @param options driver-specific extras, by key (documented by each driver)
 */
public record VmSpec(
    String sandboxId,
    long incarnation,
    int vcpus,
    int memoryMiB,
    int pidsLimit,
    Path stateDir,
    Map<String, String> options) {

  /**
   * Option: the guest agent's lease in ms from its start, before any handshake (a node frozen
   * between starting a VM and its first handshake must not leave it running); drivers that can
   * pass it to the agent do (the process driver; not yet the QEMU guest).
   */
  public static final String AGENT_LEASE_MS = "agent-lease-ms";

  /** Option: the writable layer's size in MiB (drivers that have one; the driver's default otherwise). */
  public static final String DISK_MIB = "disk-mib";

  /**
   * Option: the image the VM's root runs, a reference pinned to its manifest digest; absent for the
   * driver's default image. The driver gets its layers from its {@link ImageRootfs}.
   */
  public static final String IMAGE = "image";

  /** Option: the tenant the image is looked up for (images are per tenant). */
  public static final String IMAGE_OWNER = "image-owner";

  /**
   * Option: the tenant the sandbox belongs to. Drivers that share anything between sandboxes (the
   * qemu driver's VM templates) share it only within one tenant.
   */
  public static final String TENANT = "tenant";

  /**
   * Option: a snapshot's directory ({@link Vm#suspend}, {@link Vm#snapshot}) to start from instead
   * of booting. The VM continues where the snapshot was taken, with the snapshot's writable disk
   * as this sandbox's own, and its agent takes this spec's sandbox id and incarnation at the first
   * handshake (for a fork, another sandbox's). vCPUs and memory must be the snapshot's. Drivers
   * that cannot restore refuse it. A snapshot without memory ({@link Snapshot#memory()} false: the
   * process driver's) boots the VM afresh on its writable disk instead; the process driver restores
   * a sandbox only from its own snapshots.
   */
  public static final String RESTORE_FROM = "restore-from";

  /** This spec with one more option. */
  public VmSpec withOption(String key, String value) {
    Map<String, String> o = new java.util.HashMap<>(options);
    o.put(key, value);
    return new VmSpec(sandboxId, incarnation, vcpus, memoryMiB, pidsLimit, stateDir, o);
  }

  public VmSpec {
    Objects.requireNonNull(sandboxId, "sandboxId");
    Objects.requireNonNull(stateDir, "stateDir");
    if (incarnation < 1) throw new IllegalArgumentException("incarnation must be >= 1");
    if (vcpus < 1) throw new IllegalArgumentException("vcpus must be >= 1");
    if (memoryMiB < 16) throw new IllegalArgumentException("memoryMiB must be >= 16");
    if (pidsLimit < 0) throw new IllegalArgumentException("pidsLimit must be >= 0");
    options = Map.copyOf(options == null ? Map.of() : options);
  }
}
