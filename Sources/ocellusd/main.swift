print("ocellusd")
