package dev.flotilla.agent.protocol.client;

/**
 * A change under a watched directory.
 *
 * @param path relative to the watched directory (empty for OVERFLOW)
 * @param dropped OVERFLOW: how many events were lost at this place (0: unknown)
 */
public record FsEvent(Kind kind, String path, long dropped) {

  public enum Kind {
    /** Created or moved in. */
    CREATED,
    /** Contents or attributes changed. */
    MODIFIED,
    /** Deleted or moved out. */
    DELETED,
    /** Events were lost here: whatever the watcher keeps of the directory must be read again. */
    OVERFLOW
  }
}
