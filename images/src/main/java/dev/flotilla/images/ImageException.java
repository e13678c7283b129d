package dev.flotilla.images;

/**
 * Anything that went wrong with an image: a bad reference, a refused or failed download, content
 * that does not match its digest, a hostile or unreadable archive. The message says what happened
 * and, where the caller can do something about it, what to fix.
 */
public class ImageException extends RuntimeException {

  public ImageException(String message) {
    super(message);
  }

  public ImageException(String message, Throwable cause) {
    super(message, cause);
  }

  /** The image (or a name for it) is unknown to the caller; another tenant's image is reported this way too. */
  public static final class NotFound extends ImageException {
    public NotFound(String message) {
      super(message);
    }
  }

  /**
   * The registry could not be reached or stopped answering (connect failure, timeout, a broken
   * transfer): nothing is wrong with the request, a retry may work.
   */
  public static final class Unavailable extends ImageException {
    public Unavailable(String message, Throwable cause) {
      super(message, cause);
    }
  }
}
