package dev.flotilla.persistence.evolution;

import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The same types today: components added (some with defaults from the compact constructor), one
 * removed ({@code note}), component order changed, an enum constant added before the old ones,
 * a numeric component widened (int to long).
 */
public final class NewShapes {
  private NewShapes() {}

  public enum Phase {
    PAUSED,
    RUNNING,
    CREATING
  }

  public record Spec(String driver, long vcpus, long memoryMb) {}

  public record SandboxCreated(
      Phase phase,
      String sandboxId,
      Spec spec,
      List<String> tags,
      Map<String, String> labels,
      int incarnation,
      boolean pinned,
      Optional<String> owner) {
    public SandboxCreated {
      labels = labels == null ? Map.of() : labels; // default for events written before labels existed
      owner = owner == null ? Optional.empty() : owner;
    }
  }

  public static final class PlainState {
    String name;
    int restarts;
    String host;

    public PlainState() {}
  }
}
