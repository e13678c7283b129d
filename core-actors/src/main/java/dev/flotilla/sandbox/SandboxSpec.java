package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * What a user asked for: immutable once the sandbox exists. Stored inside events, so fields are
 * only ever added (the Kryo record serializer fills missing ones with defaults on replay).
 *
 * @param diskMiB the writable layer's cap; 0 (sandboxes created before it existed): the driver's default
 * @param image the image its root runs, pinned to a manifest digest at create; empty: the default image
 * @param command the sandbox's main process (argv, with the image's Env, WorkingDir and User); empty
 *     (sandboxes created before it existed too): none, the sandbox runs its agent and waits for execs
 * @param lifetime its timeout and idle timeout; null (sandboxes created before it existed): none
 * @param network its network; null (sandboxes created before it existed): none
 */
public record SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy,
                          int diskMiB, String image, List<String> command, Lifetime lifetime, Network network)
    implements FlotillaSerializable {

  public SandboxSpec {
    Objects.requireNonNull(driver, "driver");
    labels = labels == null ? Map.of() : Map.copyOf(new TreeMap<>(labels));
    restartPolicy = restartPolicy == null ? RestartPolicy.ALWAYS : restartPolicy;
    image = image == null ? "" : image;
    command = command == null ? List.of() : List.copyOf(command);
    lifetime = lifetime == null ? Lifetime.NONE : lifetime;
    network = network == null ? Network.OFF : network;
  }

  /** This spec running {@code pinned} (a reference pinned to its manifest digest). */
  public SandboxSpec withImage(String pinned) {
    return new SandboxSpec(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, pinned, command, lifetime, network);
  }

  /** This spec with {@code argv} as its main process. */
  public SandboxSpec withCommand(List<String> argv) {
    return new SandboxSpec(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, image, argv, lifetime, network);
  }

  /** This spec with {@code l} as its lifetime. */
  public SandboxSpec withLifetime(Lifetime l) {
    return new SandboxSpec(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, image, command, l, network);
  }

  /** This spec with {@code n} as its network. */
  public SandboxSpec withNetwork(Network n) {
    return new SandboxSpec(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, image, command, lifetime, n);
  }

  /** This spec with {@code v} vCPUs and {@code m} MiB of memory (a live resize). */
  public SandboxSpec withResources(int v, int m) {
    return new SandboxSpec(driver, v, m, labels, restartPolicy, diskMiB, image, command, lifetime, network);
  }

  /** A spec without a network. */
  public SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy,
      int diskMiB, String image, List<String> command, Lifetime lifetime) {
    this(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, image, command, lifetime, Network.OFF);
  }

  /** A spec without a timeout or idle timeout. */
  public SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy,
      int diskMiB, String image, List<String> command) {
    this(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, image, command, Lifetime.NONE, Network.OFF);
  }

  /** A spec without a main process. */
  public SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy,
      int diskMiB, String image) {
    this(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, image, List.of());
  }

  /** A spec on the default image with the driver's default disk. */
  public SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy) {
    this(driver, vcpus, memoryMiB, labels, restartPolicy, 0, "");
  }
}
