package dev.flotilla.sandbox;

import java.util.Optional;
import java.util.function.Consumer;

/**
 * What the control plane needs to know of the journal the entities persist to, whatever it is:
 * whether it can be written now, and news when it cannot. The node wires it to its journal
 * probe; without one the journal counts as always available.
 */
public interface JournalStatus {

  /** Why the journal cannot be used now, for a user (what is wrong, since when); empty when it can. */
  Optional<String> unavailable();

  /**
   * Calls {@code onDown} with the reason when the journal is, or becomes, unavailable (possibly
   * more than once, on any thread) until the returned handle is run.
   */
  Runnable onDown(Consumer<String> onDown);

  JournalStatus ALWAYS_AVAILABLE = new JournalStatus() {
    @Override
    public Optional<String> unavailable() {
      return Optional.empty();
    }

    @Override
    public Runnable onDown(Consumer<String> onDown) {
      return () -> {};
    }
  };
}
