from emonet_face.cli.main import main

main()
