"""`chargen serve`: the HTTP API and the web studio (studio/) over models loaded once; needs the serve extra."""
