package dev.flotilla.sandbox.protocol;

/**
 * A change under a watched directory.
 *
 * @param path relative to the watched directory (empty for OVERFLOW)
 * @param dropped OVERFLOW: how many events were lost (0: unknown)
 */
public record FsChange(Kind kind, String path, long dropped) implements FsValue {

  public enum Kind {
    CREATED,
    MODIFIED,
    DELETED,
    /** Events were lost (the guest's or the node's bounded queue was full): read the directory again. */
    OVERFLOW
  }
}
