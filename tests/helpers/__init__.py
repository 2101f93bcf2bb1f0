"""Code the tests share: run helpers, toy components and stand-ins, imported as `helpers.<module>`."""
