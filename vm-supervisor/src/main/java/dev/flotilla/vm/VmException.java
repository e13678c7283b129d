package dev.flotilla.vm;

/** A driver could not do what it was asked; the message says why in terms a user can act on. */
public class VmException extends Exception {
  public VmException(String message) {
    super(message);
  }

  public VmException(String message, Throwable cause) {
    super(message, cause);
  }
}
