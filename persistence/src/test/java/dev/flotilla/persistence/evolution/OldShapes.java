package dev.flotilla.persistence.evolution;

import java.util.List;

/**
 * The shapes as they were when the committed fixtures were written. Never edit: the fixtures under
 * {@code src/test/resources/evolution/} were produced from exactly these declarations.
 */
public final class OldShapes {
  private OldShapes() {}

  public enum Phase {
    CREATING,
    RUNNING
  }

  public record Spec(String driver, int vcpus) {}

  public record SandboxCreated(String sandboxId, Spec spec, String note, List<String> tags, Phase phase) {}

  /** A plain class, stored with Kryo's chunked CompatibleFieldSerializer. */
  public static final class PlainState {
    String name;
    int restarts;

    public PlainState() {}

    public PlainState(String name, int restarts) {
      this.name = name;
      this.restarts = restarts;
    }
  }
}
