"""Front matter of headered documents: the text it sits in, its blocks, and the edits
documentation steps make to it.
"""
